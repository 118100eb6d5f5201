//! Scoring outside the graph walk: a walk's candidates rescored against the f16 vectors
//! (from memory or the segment's file), and the int8 scan of a small segment or of the few
//! points a selective filter keeps.

use super::graph::{prefetch, Graph, PREFETCH_AHEAD};
use super::scratch::{Cand, Scratch};

impl Graph {
    /// An approximate inner product in code units as a similarity (the scale of f32 scores).
    #[inline]
    pub fn approx_similarity(&self, code_score: f32) -> f32 {
        code_score / (self.rows.scale * self.rows.scale)
    }

    /// Approximate similarity of the query's codes `q` with a published slot's codes.
    ///
    /// # Safety
    /// `slot` is published (see [`Rows::code`]).
    #[inline]
    pub unsafe fn approx(&self, q: &[i8], slot: u32) -> f32 {
        // SAFETY: forwarded contract.
        self.approx_similarity(self.score(q, unsafe { self.rows.code(slot as usize) }))
    }

    /// Exact inner products of the f32 query with the f16 vectors of published `slots`, in
    /// order (`halves` is working memory).
    ///
    /// # Safety
    /// Every slot is published (see [`Rows::code`]).
    pub unsafe fn score_slots(
        &self,
        q: &[f32],
        slots: &[u32],
        halves: &mut Vec<u16>,
    ) -> std::io::Result<Vec<f32>> {
        halves.clear();
        // SAFETY: forwarded contract.
        unsafe { self.rows.halves_into(slots, halves) }?;
        Ok(halves
            .chunks_exact(self.rows.dim())
            .map(|h| (self.kern.dot_f16)(q, h))
            .collect())
    }

    /// Replaces the code scores of `cands` by inner products of the f32 query with the f16
    /// vectors, sorts them best first and keeps `k`. When the vectors cannot be read (a
    /// failing disk) the approximate scores stand, with an error logged.
    pub fn rescore(
        &self,
        q: &[f32],
        cands: &mut [Cand],
        k: usize,
        halves: &mut Vec<u16>,
    ) -> Vec<Cand> {
        let slots: Vec<u32> = cands.iter().map(|c| c.i).collect();
        // SAFETY: candidates come from links or from ready slots.
        match unsafe { self.score_slots(q, &slots, halves) } {
            Ok(scores) => {
                for (c, s) in cands.iter_mut().zip(scores) {
                    c.s = s;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read vectors to rescore; approximate scores kept");
                for c in cands.iter_mut() {
                    c.s = self.approx_similarity(c.s);
                }
            }
        }
        cands.sort_unstable_by(|a, b| b.cmp(a));
        cands.iter().take(k).copied().collect()
    }

    /// Top-`r` by code score (best first, code units) over the written slots below `upto`
    /// passing `keep`: the scan of a small segment or a selective filter, to be rescored.
    /// Slots are filtered a block at a time, then the kept ones scored with their codes
    /// prefetched (kept slots are sparse when the filter is selective, so the hardware would
    /// not).
    pub fn scan_codes(
        &self,
        q: &[i8],
        r: usize,
        upto: usize,
        keep: &dyn Fn(u32) -> bool,
        sc: &mut Scratch,
    ) -> Vec<Cand> {
        const BLOCK: usize = 1024;
        let Scratch {
            found, nbrs: kept, ..
        } = sc;
        found.clear();
        let bytes = self.rows.dim();
        let upto = upto.min(self.rows.cap());
        for start in (0..upto).step_by(BLOCK) {
            kept.clear();
            kept.extend(
                (start..(start + BLOCK).min(upto))
                    .filter(|&i| self.rows.is_ready(i) && keep(i as u32))
                    .map(|i| i as u32),
            );
            for &i in kept.iter().take(PREFETCH_AHEAD) {
                prefetch(self.rows.code_ptr(i as usize), bytes);
            }
            for j in 0..kept.len() {
                if let Some(&next) = kept.get(j + PREFETCH_AHEAD) {
                    prefetch(self.rows.code_ptr(next as usize), bytes);
                }
                let i = kept[j];
                let s = self.score(q, self.vec(i));
                if found.len() < r {
                    found.push(std::cmp::Reverse(Cand { s, i }));
                } else if found.peek().is_some_and(|w| s > w.0.s) {
                    found.pop();
                    found.push(std::cmp::Reverse(Cand { s, i }));
                }
            }
        }
        let mut out: Vec<Cand> = found.drain().map(|r| r.0).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }

    /// Exact top-`k` by the f16 vectors over the written slots below `upto` passing `keep`,
    /// best first: reads every kept vector (for checking recall, not for serving).
    pub fn search_exact(
        &self,
        q: &[f32],
        k: usize,
        upto: usize,
        keep: &dyn Fn(u32) -> bool,
        sc: &mut Scratch,
    ) -> Vec<Cand> {
        let upto = upto.min(self.rows.cap());
        let kept: Vec<u32> = (0..upto)
            .filter(|&i| self.rows.is_ready(i) && keep(i as u32))
            .map(|i| i as u32)
            .collect();
        let mut all = Vec::with_capacity(kept.len());
        for block in kept.chunks(1024) {
            // SAFETY: every slot in `kept` is ready (checked above with acquire).
            match unsafe { self.score_slots(q, block, &mut sc.halves) } {
                Ok(scores) => all.extend(block.iter().zip(scores).map(|(&i, s)| Cand { s, i })),
                Err(e) => tracing::error!(error = %e, "cannot read vectors for an exact scan"),
            }
        }
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.truncate(k);
        all
    }
}
