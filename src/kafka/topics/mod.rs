//! Topics as code: their definitions ([`spec`]) and their setup on a
//! cluster ([`admin`]).

mod admin;
mod spec;

pub use admin::*;
pub use spec::*;
