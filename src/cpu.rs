//! CPU time used so far, by the calling thread and by the whole process.

/// Nanoseconds of CPU the calling thread has used (0 where the clock is missing).
pub fn thread_cpu_nanos() -> u64 {
    clock_nanos(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Nanoseconds of CPU every thread of the process has used (0 where the clock is missing).
pub fn process_cpu_nanos() -> u64 {
    clock_nanos(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn clock_nanos(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given
    if unsafe { libc::clock_gettime(clock, &mut t) } != 0 {
        return 0;
    }
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_clocks_move_with_work() {
        let (thread, process) = (thread_cpu_nanos(), process_cpu_nanos());
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(thread_cpu_nanos() > thread);
        assert!(process_cpu_nanos() >= process + (thread_cpu_nanos() - thread) / 2);
    }
}
