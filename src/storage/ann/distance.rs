//! Inner-product kernels, chosen once at run time by CPU feature detection.
//!
//! The whole index spends its time here: one 384-d dot product is 384 multiply-adds over
//! 1.5 KiB of memory. The same binary runs on any x86-64: AVX-512F or AVX2+FMA are used when
//! the CPU has them, otherwise a portable loop with eight independent accumulators, which the
//! compiler turns into SSE2 code (one accumulator would serialise every addition).

use std::sync::OnceLock;

/// A dot-product kernel: inner product over the common prefix of two slices.
pub type DotFn = fn(&[f32], &[f32]) -> f32;

/// Inner product of two vectors (over the shorter length when lengths differ).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernel().1)(a, b)
}

/// The kernel chosen for this CPU, to hold in hot loops instead of calling [`dot`].
pub fn dot_kernel() -> DotFn {
    kernel().1
}

/// Name of the kernel chosen for this CPU ("avx512", "avx2-fma" or "scalar").
pub fn kernel_name() -> &'static str {
    kernel().0
}

/// Detects the CPU's features once and remembers the best kernel.
fn kernel() -> &'static (&'static str, DotFn) {
    static KERNEL: OnceLock<(&'static str, DotFn)> = OnceLock::new();
    KERNEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var_os("AKOSHA_ANN_SCALAR").is_some() {
                return ("scalar", dot_scalar as DotFn);
            }
            if std::env::var_os("AKOSHA_ANN_NO_AVX512").is_none()
                && is_x86_feature_detected!("avx512f")
            {
                return ("avx512", x86::dot_avx512 as DotFn);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return ("avx2-fma", x86::dot_avx2 as DotFn);
            }
        }
        ("scalar", dot_scalar as DotFn)
    })
}

/// Portable kernel: eight independent accumulators so the loop vectorizes.
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut sum = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Safe entry point: only installed by `kernel()` after AVX2 and FMA were detected.
    pub(super) fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: this function is only selected when the CPU reports avx2 and fma.
        unsafe { dot_avx2_impl(a, b) }
    }

    /// Safe entry point: only installed by `kernel()` after AVX-512F was detected.
    pub(super) fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: this function is only selected when the CPU reports avx512f.
        unsafe { dot_avx512_impl(a, b) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_avx2_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads 8 floats at offset i with i + 8 <= n (or i + 32 <= n).
        unsafe {
            while i + 32 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_loadu_ps(pa.add(i + 8 * j));
                    let y = _mm256_loadu_ps(pb.add(i + 8 * j));
                    *acc = _mm256_fmadd_ps(x, y, *acc);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i)),
                    _mm256_loadu_ps(pb.add(i)),
                    acc[0],
                );
                i += 8;
            }
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        let mut sum = _mm_cvtss_f32(s);
        while i < n {
            sum += a[i] * b[i];
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dot_avx512_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY: full loads stay below n; the tail uses a masked load of the n - i < 16 rest.
        unsafe {
            while i + 32 <= n {
                acc0 =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                    acc1,
                );
                i += 32;
            }
            while i + 16 <= n {
                acc0 =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u16 << (n - i)) - 1;
                let x = _mm512_maskz_loadu_ps(mask, pa.add(i));
                let y = _mm512_maskz_loadu_ps(mask, pb.add(i));
                acc1 = _mm512_fmadd_ps(x, y, acc1);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    #[test]
    fn kernels_agree_with_naive_sum_at_every_length() {
        for n in [0usize, 1, 7, 8, 15, 16, 31, 33, 100, 384, 385] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) / 9.0).collect();
            let want = naive(&a, &b);
            for (name, f) in [("scalar", dot_scalar as DotFn), ("chosen", dot_kernel())] {
                let got = f(&a, &b) as f64;
                assert!(
                    (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{name} n={n}: {got} vs {want}"
                );
            }
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    let got = x86::dot_avx2(&a, &b) as f64;
                    assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "avx2 n={n}");
                }
                if is_x86_feature_detected!("avx512f") {
                    let got = x86::dot_avx512(&a, &b) as f64;
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "avx512 n={n}"
                    );
                }
            }
        }
    }

    #[test]
    fn unequal_lengths_use_the_common_prefix() {
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[1.0, 1.0]), 3.0);
    }
}
