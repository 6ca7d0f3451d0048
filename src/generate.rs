//! PLACEHOLDER: being written by a teammate (realistic frame generator).
#[derive(Debug, Clone)]
pub struct GenerateOptions { pub count: u64, pub rate: u32, pub users: u32, pub seed: u64, pub frame_len: usize, pub max_delay: u32, pub delay_percent: f64, pub start: u64 }
pub struct GenerateSummary { pub frames: u64, pub bytes: u64, pub first_ts: u64, pub last_ts: u64 }
pub fn generate<W: std::io::Write>(_opts: &GenerateOptions, _out: W) -> std::io::Result<GenerateSummary> { unimplemented!("placeholder") }
