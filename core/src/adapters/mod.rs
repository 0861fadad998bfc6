//! Adapters: the ports implemented over real systems. The embedded profile is SQLite for
//! store, queues and balances, local keys, and any JSON-RPC node.

pub mod evm;
pub mod rpc;
pub mod sqlite;
