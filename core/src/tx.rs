//! EVM transactions as data: what a withdrawal's transfer is signed as, and back. Pure code
//! (no I/O, no keys), so stages build and decode transactions without reaching into an
//! adapter; the key adapters only sign what this builds.

use crate::ports::{Fees, UnsignedTransfer};
use alloy::consensus::{TxEip1559, TxEnvelope, TxLegacy, TypedTransaction};
use alloy::primitives::{Address, Bytes, TxKind, U256};

/// The transaction a transfer is signed as: EIP-1559, or legacy with EIP-155 replay
/// protection on a chain configured without EIP-1559. Nonces come from the store, never
/// from a node.
pub fn typed(t: &UnsignedTransfer) -> TypedTransaction {
    if t.fees.legacy {
        return TypedTransaction::Legacy(TxLegacy {
            chain_id: Some(t.chain_id),
            nonce: t.nonce,
            gas_price: t.fees.max_fee_per_gas,
            gas_limit: t.gas_limit,
            to: TxKind::Call(t.to),
            value: t.value,
            input: t.input.clone(),
        });
    }
    TypedTransaction::Eip1559(TxEip1559 {
        chain_id: t.chain_id,
        nonce: t.nonce,
        gas_limit: t.gas_limit,
        max_fee_per_gas: t.fees.max_fee_per_gas,
        max_priority_fee_per_gas: t.fees.max_priority_fee_per_gas,
        to: TxKind::Call(t.to),
        value: t.value,
        access_list: Default::default(),
        input: t.input.clone(),
    })
}

/// The transfer a signed transaction makes, so a replacement can be signed with exactly
/// the same destination, value, data and nonce and only the fees changed.
pub fn decode_transfer(raw: &[u8]) -> Result<UnsignedTransfer, String> {
    use alloy::eips::eip2718::Decodable2718;
    let env = TxEnvelope::decode_2718(&mut &raw[..]).map_err(|e| format!("undecodable attempt: {e}"))?;
    let (chain_id, nonce, to, value, input, gas_limit, fees) = match &env {
        TxEnvelope::Eip1559(s) => {
            let tx = s.tx();
            let fees = Fees::eip1559(tx.max_fee_per_gas, tx.max_priority_fee_per_gas);
            (tx.chain_id, tx.nonce, tx.to, tx.value, tx.input.clone(), tx.gas_limit, fees)
        }
        TxEnvelope::Legacy(s) => {
            let tx = s.tx();
            let chain_id = tx.chain_id.ok_or("attempt is a legacy transaction without replay protection")?;
            (chain_id, tx.nonce, tx.to, tx.value, tx.input.clone(), tx.gas_limit, Fees::legacy(tx.gas_price))
        }
        _ => return Err("attempt is neither an EIP-1559 nor a legacy transaction".into()),
    };
    let TxKind::Call(to) = to else { return Err("attempt creates a contract".into()) };
    Ok(UnsignedTransfer { chain_id, nonce, to, value, input, gas_limit, fees })
}

alloy::sol! {
    function transfer(address to, uint256 amount) returns (bool);
    function balanceOf(address owner) returns (uint256);
}

/// Calldata of an ERC-20 `transfer(to, amount)`.
pub fn erc20_transfer_calldata(to: Address, amount: U256) -> Bytes {
    use alloy::sol_types::SolCall;
    Bytes::from(transferCall { to, amount }.abi_encode())
}

/// Calldata of an ERC-20 `balanceOf(owner)`.
pub fn erc20_balance_of_calldata(owner: Address) -> Bytes {
    use alloy::sol_types::SolCall;
    Bytes::from(balanceOfCall { owner }.abi_encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_transfer_decodes_to_what_was_signed() {
        use alloy::consensus::SignableTransaction;
        use alloy::eips::eip2718::Encodable2718;
        use alloy::primitives::Signature;
        let t = UnsignedTransfer {
            chain_id: 31337,
            nonce: 7,
            to: Address::repeat_byte(0x11),
            value: U256::ZERO,
            input: erc20_transfer_calldata(Address::repeat_byte(0x22), U256::from(5u64)),
            gas_limit: 65_000,
            fees: Fees::eip1559(30, 2),
        };
        // Any signature will do: decoding reads the transaction, not who signed it.
        let sig = Signature::new(U256::from(1u64), U256::from(1u64), false);
        let raw = TxEnvelope::from(typed(&t).into_signed(sig)).encoded_2718();
        assert_eq!(decode_transfer(&raw), Ok(t.clone()));
        assert!(decode_transfer(&raw[1..]).is_err(), "a truncated envelope is refused");
        let legacy = UnsignedTransfer { fees: Fees::legacy(40), ..t };
        let raw = TxEnvelope::from(typed(&legacy).into_signed(sig)).encoded_2718();
        assert!(raw[0] >= 0xc0, "a legacy transaction is a bare RLP list");
        assert_eq!(decode_transfer(&raw), Ok(legacy));
    }

    #[test]
    fn erc20_calldata_is_the_abi_encoding() {
        let data = erc20_transfer_calldata(Address::repeat_byte(0xab), U256::from(256u64));
        assert_eq!(&data[..4], &[0xa9, 0x05, 0x9c, 0xbb], "transfer(address,uint256) selector");
        assert_eq!(data.len(), 4 + 32 + 32);
        assert_eq!(&data[16..36], &[0xab; 20]);
        assert_eq!(data[4 + 32 + 30..], [1, 0]);
        assert_eq!(&erc20_balance_of_calldata(Address::ZERO)[..4], &[0x70, 0xa0, 0x82, 0x31], "balanceOf(address) selector");
    }
}
