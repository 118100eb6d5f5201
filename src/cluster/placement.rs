//! Placement: which members hold each of the 256 shards, computed the same on every node.
//!
//! Rendezvous (highest random weight) hashing: every (shard, member) pair gets a score from a
//! stable hash, and a shard's replicas are the `replication_factor` members with the highest
//! scores, best first (the first is the shard's primary). A member joining takes from each
//! shard only the place it now wins, and a member leaving gives up only its own places: about
//! `1 / members` of the replicas move, never a reshuffle.
//!
//! The hash is FNV-1a 64 of the member id, mixed with the shard number by SplitMix64's
//! finaliser. Both are fixed here, never std's randomized `DefaultHasher`, so two nodes (and
//! two builds) compute the same table from the same members.

use std::collections::BTreeSet;

use crate::record::{ShardId, SHARD_COUNT as SHARDS};

/// The shard → ordered replica list table of one set of members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// members the table was computed from, sorted
    members: Vec<String>,
    /// copies of each shard actually placed: the configured factor capped by the members
    replication_factor: usize,
    /// for each shard, indexes into `members`, best first
    replicas: Vec<Vec<u16>>,
    /// fingerprint of (members, replication factor): equal on two nodes iff their tables are
    version: u64,
}

impl Placement {
    /// Computes the table for `members` with `replication_factor` copies (capped by the members).
    ///
    /// Duplicate ids count once; with no member every shard has no replica.
    pub fn compute<'a>(
        members: impl IntoIterator<Item = &'a str>,
        replication_factor: usize,
    ) -> Placement {
        let members: Vec<String> = members
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_string)
            .collect();
        let rf = replication_factor.min(members.len());
        let member_hashes: Vec<u64> = members.iter().map(|m| fnv1a(m.as_bytes())).collect();
        let mut scored: Vec<(u64, u16)> = Vec::with_capacity(members.len());
        let replicas = (0..SHARDS)
            .map(|shard| {
                let shard_hash = mix(shard as u64 ^ 0x5348_4152_445f_4b45);
                scored.clear();
                scored.extend(
                    member_hashes
                        .iter()
                        .enumerate()
                        .map(|(i, h)| (mix(h ^ shard_hash), i as u16)),
                );
                // highest score first; ties (astronomically rare) go to the smaller id
                scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                scored.iter().take(rf).map(|&(_, i)| i).collect()
            })
            .collect();
        let mut fingerprint = Fnv::new();
        fingerprint.write(&(rf as u64).to_le_bytes());
        for m in &members {
            fingerprint.write(m.as_bytes());
            fingerprint.write(&[0]);
        }
        Placement {
            members,
            replication_factor: rf,
            replicas,
            version: fingerprint.finish(),
        }
    }

    /// The members the table spreads shards over, sorted.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Copies of each shard in this table (the configured factor capped by the members).
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// Fingerprint of the table: two nodes with the same version computed the same table.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The members holding `shard`, primary first; empty for a shard out of range.
    pub fn replicas(&self, shard: ShardId) -> Vec<&str> {
        self.replicas
            .get(usize::from(shard))
            .map(|r| {
                r.iter()
                    .map(|&i| self.members[usize::from(i)].as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The shards `member` holds a copy of, ascending.
    pub fn shards_of(&self, member: &str) -> Vec<ShardId> {
        let Ok(index) = self.members.binary_search_by(|m| m.as_str().cmp(member)) else {
            return Vec::new();
        };
        let index = index as u16;
        self.replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.contains(&index))
            .map(|(shard, _)| shard as ShardId)
            .collect()
    }
}

/// FNV-1a 64, a fixed byte hash.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(bytes);
    h.finish()
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    fn table(members: &[String], rf: usize) -> Placement {
        Placement::compute(members.iter().map(String::as_str), rf)
    }

    /// Replica places (shard, member) that differ between two tables.
    fn moved(a: &Placement, b: &Placement) -> usize {
        (0..SHARDS as ShardId)
            .map(|s| {
                let before: BTreeSet<&str> = a.replicas(s).into_iter().collect();
                b.replicas(s)
                    .into_iter()
                    .filter(|m| !before.contains(m))
                    .count()
            })
            .sum()
    }

    #[test]
    fn every_node_computes_the_same_table() {
        let members = ids(5);
        let a = table(&members, 2);
        let mut reversed = members.clone();
        reversed.reverse();
        reversed.push("node-3".into()); // a duplicate from a second source counts once
        let b = table(&reversed, 2);
        assert_eq!(a, b);
        assert_eq!(a.version(), b.version());
        // and the same as in any other build: the hash is fixed, not randomized
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(table(&members, 3).version(), a.version());
        assert_ne!(table(&ids(4), 2).version(), a.version());
    }

    #[test]
    fn each_shard_has_distinct_replicas_capped_by_members() {
        for n in 1..=6 {
            for rf in 1..=4 {
                let t = table(&ids(n), rf);
                assert_eq!(t.replication_factor(), rf.min(n));
                for s in 0..SHARDS as ShardId {
                    let r = t.replicas(s);
                    assert_eq!(r.len(), rf.min(n));
                    let distinct: BTreeSet<&str> = r.iter().copied().collect();
                    assert_eq!(distinct.len(), r.len());
                }
                let held: usize = ids(n).iter().map(|m| t.shards_of(m).len()).sum();
                assert_eq!(held, SHARDS * rf.min(n));
            }
        }
        let single = table(&ids(1), 2);
        assert_eq!(single.shards_of("node-1").len(), SHARDS);
        assert!(single.shards_of("node-9").is_empty());
        assert!(Placement::compute([], 2).replicas(0).is_empty());
        assert!(single.replicas(300).is_empty());
    }

    #[test]
    fn load_is_spread_evenly() {
        for n in [3, 5, 10] {
            let t = table(&ids(n), 2);
            let fair = SHARDS * 2 / n;
            for m in ids(n) {
                let held = t.shards_of(&m).len();
                // binomial spread: well within ±40% of the fair share at these sizes
                assert!(
                    held * 10 >= fair * 6 && held * 10 <= fair * 14,
                    "{m} holds {held} of a fair {fair} with {n} members"
                );
            }
        }
    }

    #[test]
    fn joining_or_leaving_moves_only_about_its_share() {
        for n in [2, 3, 5, 8] {
            let before = ids(n);
            let mut after = before.clone();
            after.push(format!("node-{}", n + 1));
            for rf in [1, 2, 3] {
                let old = table(&before, rf);
                let new = table(&after, rf);
                let places = SHARDS * new.replication_factor();
                let share = places / (n + 1);
                let joined = moved(&old, &new);
                // every moved place is one the newcomer took, and it took about its share
                assert_eq!(joined, new.shards_of(&after[n]).len(), "n={n} rf={rf}");
                assert!(
                    joined <= share * 3 / 2 && joined * 2 >= share,
                    "join n={n} rf={rf}: moved {joined}, share {share}"
                );
                if rf <= n {
                    // leaving again moves exactly the same places back
                    assert_eq!(moved(&new, &old), joined, "n={n} rf={rf}");
                }
                // a member other than the newcomer leaving moves only what it held
                let mut without = before.clone();
                let gone = without.remove(0);
                let smaller = table(&without, rf);
                let lost = old.shards_of(&gone).len();
                let refilled = moved(&old, &smaller);
                assert!(
                    refilled <= lost,
                    "leave n={n} rf={rf}: moved {refilled} > held {lost}"
                );
            }
        }
    }
}
