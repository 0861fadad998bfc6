//! withdraw-core: the domain, the state machine, the ports, the pipeline stages (behind the
//! `stages` feature) and the adapters (behind `adapters`) of withdrawd. Stages compile
//! without the adapters: they see the ports only.

pub mod decide;
pub mod domain;
pub mod fees;
pub mod machine;
pub mod ports;
pub mod tx;
pub mod wire;

#[cfg(feature = "adapters")]
pub mod adapters;
#[cfg(feature = "stages")]
pub mod stages;

#[cfg(feature = "testing")]
pub mod testing;
