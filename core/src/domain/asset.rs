//! Assets the system pays out: the chain's native coin or an ERC-20 contract, with the
//! decimals that amounts are parsed with and the per-asset limits the signer enforces.

use super::Amount;
use alloy::primitives::Address;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKind {
    Native,
    Erc20 { contract: Address },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// Symbol as clients name it ("ETH", "USDC"); unique per chain.
    pub symbol: String,
    pub chain_id: u64,
    pub kind: AssetKind,
    pub decimals: u8,
    /// Largest single withdrawal; above it the signer sends the request to the invalid DLQ.
    pub max_amount: Option<Amount>,
    /// Gas limit used for a transfer of this asset.
    pub gas_limit: u64,
    /// Above it a withdrawal waits in PENDING_APPROVAL for an approver.
    pub approval_threshold: Option<Amount>,
}

/// The assets and chains one deployment serves; looked up on every request.
#[derive(Debug, Clone, Default)]
pub struct AssetRegistry {
    assets: Vec<Asset>,
}

impl AssetRegistry {
    pub fn new(assets: Vec<Asset>) -> Self {
        Self { assets }
    }

    pub fn find(&self, symbol: &str, chain_id: u64) -> Option<&Asset> {
        self.assets.iter().find(|a| a.symbol == symbol && a.chain_id == chain_id)
    }

    /// The asset by symbol when only one chain carries it (balances are per symbol).
    pub fn find_symbol(&self, symbol: &str) -> Option<&Asset> {
        self.assets.iter().find(|a| a.symbol == symbol)
    }

    pub fn has_chain(&self, chain_id: u64) -> bool {
        self.assets.iter().any(|a| a.chain_id == chain_id)
    }

    pub fn all(&self) -> &[Asset] {
        &self.assets
    }
}
