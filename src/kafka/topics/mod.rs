//! Topics as code: their definitions ([`spec`]) and their setup on a
//! cluster ([`admin`]); [`repartition`]: the input topic's partition count,
//! changed only when told to; [`watch`]: a running job notices a change.

mod admin;
mod repartition;
mod spec;
mod watch;

pub use admin::*;
pub use repartition::*;
pub use spec::*;
pub use watch::*;
