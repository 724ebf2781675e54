//! SHA-256 digests of API keys as map keys, and the cheap hashers of the request path's maps.

/// SHA-256 of a raw API key.
pub(crate) type Digest = [u8; 32];

/// Hashes a [`Digest`] by taking 8 of its bytes: SHA-256 output is already uniform, so
/// SipHash over it is wasted work on every request. (Lookups of attacker-chosen digests
/// land in random buckets; stored digests come from our own CSPRNG keys.)
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DigestHash;

impl std::hash::BuildHasher for DigestHash {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

#[derive(Debug, Default)]
pub(crate) struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length (a usize, via write_usize) then its bytes.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

/// The hasher of the request path's maps keyed by ids and names (admission scopes, the
/// ledger's buckets): foldhash, seeded per process. std's SipHash costs ~100 instructions
/// per short key, and a request makes a dozen such lookups.
pub(crate) type FastHash = foldhash::fast::RandomState;

/// A key entry that is found by its digest.
pub(crate) trait Keyed {
    fn digest(&self) -> &Digest;
}

/// An `Arc`'d key entry in a set, hashed and compared by its digest, so the set is looked up
/// with a bare [`Digest`] and holds one pointer a slot (not a digest beside it). The
/// snapshot's file keys and the directory's API keys.
#[derive(Debug)]
pub(crate) struct ByDigest<T>(pub std::sync::Arc<T>);

impl<T: Keyed> std::borrow::Borrow<Digest> for ByDigest<T> {
    fn borrow(&self) -> &Digest {
        self.0.digest()
    }
}

impl<T: Keyed> std::hash::Hash for ByDigest<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.digest().hash(state)
    }
}

impl<T: Keyed> PartialEq for ByDigest<T> {
    fn eq(&self, other: &ByDigest<T>) -> bool {
        self.0.digest() == other.0.digest()
    }
}

impl<T: Keyed> Eq for ByDigest<T> {}
