//! withdraw-core: the domain, the state machine, the ports, the adapters (behind the
//! `adapters` feature) and the pipeline stages of withdrawd.

pub mod domain;
pub mod fees;
pub mod machine;
pub mod ports;
pub mod wire;

#[cfg(feature = "adapters")]
pub mod adapters;
#[cfg(feature = "adapters")]
pub mod stages;

#[cfg(feature = "testing")]
pub mod testing;
