//! Which jobs a validator audits, and the fabricated results canaries carry.

use alloy::primitives::{Address, B256, U256, keccak256};

/// Parts per million.
pub const PPM: u32 = 1_000_000;

/// The audit draw of `validator` for job `job_id` submitted in the block whose hash is
/// `block_hash`: `keccak256(blockHash ‖ jobId ‖ validator) mod 1e6`, packed as 32 + 32 + 20 bytes.
/// The block hash exists only once the commitment is on-chain, so an executor cannot know which
/// validators will audit its result when it commits; each validator draws independently.
pub fn draw(block_hash: B256, job_id: U256, validator: Address) -> u32 {
    let mut packed = [0u8; 84];
    packed[..32].copy_from_slice(block_hash.as_slice());
    packed[32..64].copy_from_slice(&job_id.to_be_bytes::<32>());
    packed[64..].copy_from_slice(validator.as_slice());
    let hash = U256::from_be_bytes(keccak256(packed).0);
    // < 1e6: fits.
    (hash % U256::from(PPM)).to::<u32>()
}

/// Whether the draw selects the job at `rate_ppm`.
pub fn selected(block_hash: B256, job_id: U256, validator: Address, rate_ppm: u32) -> bool {
    draw(block_hash, job_id, validator) < rate_ppm
}

/// `count` token ids that a model would practically never sample in a row: a deterministic walk
/// over ordinary vocabulary ids (1,000–21,000) from `seed`. A canary's (or a test cheat's)
/// fabricated output.
pub fn fabricated_ids(seed: B256, count: u32) -> Vec<u32> {
    (0..count)
        .map(|i| {
            let word = keccak256([seed.as_slice(), &i.to_be_bytes()].concat());
            1_000 + u32::from_be_bytes([word[0], word[1], word[2], word[3]]) % 20_000
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draw is the packed keccak as specified (pinned against an independent packing), and a
    /// 100% rate selects every job, 0% none, ~5% about one in twenty.
    #[test]
    fn the_draw_is_the_packed_hash_mod_a_million() {
        let (hash, job, validator) = (
            B256::repeat_byte(0x11),
            U256::from(42),
            Address::repeat_byte(0x22),
        );
        let packed = [hash.as_slice(), &B256::from(job).0, validator.as_slice()].concat();
        let expected = U256::from_be_bytes(keccak256(&packed).0) % U256::from(1_000_000);
        assert_eq!(U256::from(draw(hash, job, validator)), expected);
        let mut selected_at_5 = 0;
        for i in 0..2_000u64 {
            let hash = keccak256(i.to_be_bytes());
            assert!(selected(hash, job, validator, PPM));
            assert!(!selected(hash, job, validator, 0));
            selected_at_5 += u32::from(selected(hash, job, validator, 50_000));
        }
        assert!((60..=140).contains(&selected_at_5), "{selected_at_5}");
        // Validators draw independently.
        let other = Address::repeat_byte(0x23);
        assert_ne!(draw(hash, job, validator), draw(hash, job, other));
    }

    #[test]
    fn fabricated_ids_are_deterministic_ordinary_ids() {
        let ids = fabricated_ids(B256::repeat_byte(1), 16);
        assert_eq!(ids, fabricated_ids(B256::repeat_byte(1), 16));
        assert_ne!(ids, fabricated_ids(B256::repeat_byte(2), 16));
        assert!(ids.iter().all(|id| (1_000..21_000).contains(id)));
    }
}
