// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// A plain ERC-20 with 6 decimals, minted to the deployer; used by withdrawd's tests.
contract TestToken is ERC20 {
    constructor(uint256 supply) ERC20("Test Dollar", "TUSD") {
        _mint(msg.sender, supply);
    }

    function decimals() public pure override returns (uint8) {
        return 6;
    }
}

/// A token whose `transfer` returns false without reverting and moves nothing, as some
/// deployed tokens do on failure: its receipt is successful, yet nobody was paid. withdrawd
/// must not take that receipt as a payment.
contract FalseToken is ERC20 {
    constructor(uint256 supply) ERC20("False Dollar", "FUSD") {
        _mint(msg.sender, supply);
    }

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function transfer(address, uint256) public pure override returns (bool) {
        return false;
    }
}
