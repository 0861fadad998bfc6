//! Adapters: the ports implemented over real systems. The embedded profile is SQLite for
//! store, queues and balances, local keys, and any JSON-RPC node.

pub mod aws;
pub mod evm;
pub mod pool;
pub mod redis_balances;
pub mod rpc;
pub mod secrets;
pub mod sqlite;
pub mod sqs;

use crate::stages::PortTypes;

/// The embedded profile: one SQLite file for the record, the queues and the balances, and
/// JSON-RPC nodes for the chain.
#[derive(Debug)]
pub struct Embedded;

impl PortTypes for Embedded {
    type Store = sqlite::SqliteStore;
    type Queue = sqlite::SqliteQueue;
    type Balances = sqlite::SqliteBalances;
    type Chain = evm::EvmChain;
}
