//! What executors and gateways sign off-chain (DESIGN.md §6), as EIP-712 typed data.
//!
//! - [`GatewayRequest`]: a gateway's signed order to an executor; the executor serves only gateways
//!   on its allow-list, and only before `expiry`; the request id is the nonce (never served twice).
//! - [`Receipt`]: the executor's signed statement of what it computed for a request and what it
//!   costs; the gateway bills from it and settles batches of them on-chain, where they can be
//!   challenged like on-chain jobs.
//!
//! Both are signed under the domain `{name: "Infera", version: "1", chainId, verifyingContract}`
//! of the contract that settles them, so a signature is bound to one chain and one deployment.

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct, eip712_domain, sol};

use crate::commitment::{PPM, SamplingParams, pack_tokens};

sol! {
    /// A gateway's signed order to an executor.
    #[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    struct GatewayRequest {
        /// Unique per request; the executor refuses a request id it has seen.
        bytes32 requestId;
        /// The account billed.
        address payer;
        /// The registry id of the model.
        bytes32 modelId;
        /// [`prompt_hash`] of the prompt as sent.
        bytes32 promptHash;
        uint32 maxTokens;
        uint32 temperature;
        uint32 topK;
        uint32 topP;
        bytes32 seed;
        /// Unix time after which the executor refuses the request.
        uint64 expiry;
    }

    /// An executor's signed statement of one completed request.
    #[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    struct Receipt {
        bytes32 requestId;
        address payer;
        address executor;
        bytes32 modelId;
        uint32 inputTokens;
        uint32 outputTokens;
        /// Base units per million input tokens.
        uint64 inputPrice;
        /// Base units per million output tokens.
        uint64 outputPrice;
        /// The commitment to the computation (`CommitmentInput::commitment`).
        bytes32 commitment;
    }
}

/// The EIP-712 domain of signatures settled by `verifying_contract` on chain `chain_id`.
pub fn domain(chain_id: u64, verifying_contract: Address) -> Eip712Domain {
    eip712_domain! {
        name: "Infera",
        version: "1",
        chain_id: chain_id,
        verifying_contract: verifying_contract,
    }
}

/// What a prompt hashes to in a [`GatewayRequest`]: the packed token ids when the gateway sends
/// token ids, the canonical JSON of the messages when it sends messages.
pub fn prompt_hash_of_tokens(ids: &[u32]) -> B256 {
    keccak256(pack_tokens(ids))
}

/// See [`prompt_hash_of_tokens`]; `canonical_json` is `Prompt::to_json`.
pub fn prompt_hash_of_messages(canonical_json: &[u8]) -> B256 {
    keccak256(canonical_json)
}

impl GatewayRequest {
    /// The sampling parameters requested.
    pub const fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature_ppm: self.temperature,
            top_k: self.topK,
            top_p_ppm: self.topP,
        }
    }

    /// The hash the gateway signs.
    pub fn signing_hash(&self, domain: &Eip712Domain) -> B256 {
        self.eip712_signing_hash(domain)
    }
}

impl Receipt {
    /// What the payer owes for this receipt, in token base units:
    /// `floor((inputTokens × inputPrice + outputTokens × outputPrice) / 1e6)`, as the contracts
    /// compute a job's payment.
    pub fn cost(&self) -> U256 {
        (U256::from(self.inputTokens) * U256::from(self.inputPrice)
            + U256::from(self.outputTokens) * U256::from(self.outputPrice))
            / U256::from(PPM)
    }

    /// The hash the executor signs.
    pub fn signing_hash(&self, domain: &Eip712Domain) -> B256 {
        self.eip712_signing_hash(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;

    fn receipt() -> Receipt {
        Receipt {
            requestId: B256::repeat_byte(1),
            payer: Address::repeat_byte(2),
            executor: Address::repeat_byte(3),
            modelId: B256::repeat_byte(4),
            inputTokens: 1_000,
            outputTokens: 250,
            inputPrice: 100_000,
            outputPrice: 400_000,
            commitment: B256::repeat_byte(5),
        }
    }

    #[test]
    fn cost_is_per_million_and_floored() {
        assert_eq!(receipt().cost(), U256::from(200)); // (1e8 + 1e8) / 1e6
        let mut odd = receipt();
        odd.inputTokens = 1;
        odd.outputTokens = 0;
        odd.inputPrice = 999_999;
        assert_eq!(odd.cost(), U256::ZERO);
    }

    #[test]
    fn signatures_recover_and_bind_the_domain() {
        let signer = PrivateKeySigner::random();
        let domain = domain(31_337, Address::repeat_byte(9));
        let hash = receipt().signing_hash(&domain);
        let signature = signer.sign_hash_sync(&hash).unwrap();
        assert_eq!(
            signature.recover_address_from_prehash(&hash).unwrap(),
            signer.address()
        );
        // Another chain, another contract, or another field: another hash.
        assert_ne!(
            hash,
            receipt().signing_hash(&super::domain(1, Address::repeat_byte(9)))
        );
        assert_ne!(
            hash,
            receipt().signing_hash(&super::domain(31_337, Address::repeat_byte(8)))
        );
        let mut changed = receipt();
        changed.outputTokens += 1;
        assert_ne!(hash, changed.signing_hash(&domain));
    }

    #[test]
    fn request_type_string_is_stable() {
        assert_eq!(
            GatewayRequest::eip712_encode_type(),
            "GatewayRequest(bytes32 requestId,address payer,bytes32 modelId,bytes32 promptHash,\
             uint32 maxTokens,uint32 temperature,uint32 topK,uint32 topP,bytes32 seed,uint64 expiry)"
        );
    }
}
