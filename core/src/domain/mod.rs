//! The domain: ids, amounts, assets, statuses. No I/O and no serde here; wire shapes live in
//! `wire.rs` and storage rows in the adapters.

mod address;
mod amount;
mod asset;
mod ids;
mod status;

pub use address::{AddressError, parse_destination};
pub use amount::{Amount, AmountError};
pub use asset::{Asset, AssetKind, AssetRegistry};
pub use ids::WithdrawalId;
pub use status::Status;
