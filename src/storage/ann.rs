//! TEMPORARY exact stand-in until the HNSW lands (replaced before commit).
#[derive(Debug, Clone)]
pub struct AnnParams {
    pub m: usize,
    pub ef_construction: usize,
}
pub struct Hnsw {
    n: usize,
    dim: usize,
}
impl Hnsw {
    pub fn build(vectors: &[f32], dim: usize, _p: &AnnParams) -> Self {
        Hnsw {
            n: vectors.len() / dim,
            dim,
        }
    }
    pub fn search(
        &self,
        vectors: &[f32],
        q: &[f32],
        k: usize,
        _ef: usize,
        keep: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let mut t = crate::storage::distance::TopK::new(k);
        for i in 0..self.n {
            if keep(i as u32) {
                t.push(
                    i as u64,
                    crate::storage::distance::dot(q, &vectors[i * self.dim..(i + 1) * self.dim]),
                );
            }
        }
        t.into_sorted()
            .into_iter()
            .map(|s| (s.id as u32, s.score))
            .collect()
    }
}
