//! Process-wide protections set at start-up: no core dumps, secrets kept out of swap, and descriptors enough for
//! the connections `serve` may hold but no more.

use std::ptr::NonNull;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Open files `serve` may need for itself beside its connections, when checking that `--max-connections` fits:
/// the store and its `-wal` and `-shm` files, the output, standard streams, and libzmq's own (its I/O thread's
/// and reaper's pollers and mailboxes, the socket's mailbox, the listening socket): about 20 in practice.
pub const DESCRIPTOR_RESERVE: u64 = 64;

/// Connections `serve` allows when `--max-connections` is not given and the open-file limit leaves room.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;

/// Why a protection could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    /// The kernel refused to turn core dumps off.
    #[error("cannot disable core dumps ({call}): {source}")]
    CoreDumps {
        /// The call that failed.
        call: &'static str,
        /// The OS error.
        source: nix::Error,
    },
    /// The open-file limit could not be read or raised.
    #[error("cannot raise the open-file limit{}: {source}", describe_limits(*.soft, *.hard))]
    OpenFiles {
        /// The soft limit in force, when it could be read.
        soft: Option<u64>,
        /// The hard limit, when it could be read.
        hard: Option<u64>,
        /// The OS error.
        source: nix::Error,
    },
    /// The descriptors this process holds could not be listed, so the cap on connections cannot be set.
    #[error("cannot list this process's open files in /dev/fd to cap its connections: {0}")]
    ListDescriptors(nix::Error),
    /// The open-file limit could not be lowered to cap connections.
    #[error("cannot lower the open-file limit to {limit} to cap connections: {source}")]
    CapOpenFiles {
        /// The soft limit asked for.
        limit: u64,
        /// The OS error.
        source: nix::Error,
    },
    /// `--max-connections` asks for more than the open-file limit can hold.
    #[error(
        "--max-connections {asked} needs {needed} open files, but this process may open {limit}; \
         raise the limit (ulimit -n, LimitNOFILE=) or ask for at most {room}"
    )]
    TooManyConnections {
        /// The connections asked for.
        asked: u32,
        /// Open files those connections and the reserve need.
        needed: u64,
        /// The open-file limit in force.
        limit: u64,
        /// The most connections the limit leaves room for.
        room: u64,
    },
}

/// " (now S) to its maximum H" when the limits are known.
fn describe_limits(soft: Option<u64>, hard: Option<u64>) -> String {
    match (soft, hard) {
        (Some(soft), Some(hard)) => format!(" (now {soft}) to its maximum {hard}"),
        _ => String::new(),
    }
}

/// Makes sure this process never leaves its memory, which may hold secrets, in a core file, and that other
/// processes of the same user cannot read it through `ptrace` or `/proc/PID/mem`.
///
/// Both limits of RLIMIT_CORE go to 0, so nothing in the process can raise them again; on Linux the process is
/// also made non-dumpable (`PR_SET_DUMPABLE` 0), which covers a `core_pattern` that pipes to a program.
pub fn forbid_core_dumps() -> Result<(), HardeningError> {
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|source| HardeningError::CoreDumps {
        call: "setrlimit RLIMIT_CORE",
        source,
    })?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    nix::sys::prctl::set_dumpable(false).map_err(|source| HardeningError::CoreDumps {
        call: "prctl PR_SET_DUMPABLE",
        source,
    })?;
    Ok(())
}

/// Asks the kernel to keep the pages holding `secret`'s buffer in RAM, so they are never written to swap.
///
/// Best effort: returns false when the platform or the memory-lock limit (RLIMIT_MEMLOCK) refuses, and the
/// command goes on, as it did before. The pages stay locked after the buffer is freed (unlocking could unlock a
/// neighbour's); zavro locks only a few small secrets per process, far below any memory-lock limit.
pub fn keep_out_of_swap(secret: &String) -> bool {
    let Some(start) = NonNull::new(secret.as_ptr().cast_mut().cast()) else {
        return false;
    };
    if secret.capacity() == 0 {
        return false;
    }
    // SAFETY: `start..start + capacity` is `secret`'s own live allocation. mlock neither reads nor writes that
    // memory; it only pins the pages that span it, which cannot break any Rust invariant.
    unsafe { nix::sys::mman::mlock(start, secret.capacity()) }.is_ok()
}

/// Linux's `CAP_IPC_LOCK`: its holder may lock memory beyond RLIMIT_MEMLOCK.
const CAP_IPC_LOCK: u32 = 14;

/// What `serve` does to keep the secrets it holds out of swap, given what it may lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapPolicy {
    /// Lock every page of the process, those mapped now and those mapped later (`mlockall`): it may lock
    /// without limit, and its memory is bounded (tens of MiB).
    LockAll,
    /// Lock nothing and say so: under a finite memory-lock limit, locking future mappings too would make
    /// allocations fail once the limit is reached, and locking only the present ones would miss the secrets
    /// read later (each group's keys).
    Warn {
        /// The memory-lock limit in force, in bytes.
        limit: u64,
    },
}

/// The policy for a process that holds `CAP_IPC_LOCK` or not, under the soft memory-lock limit `limit`
/// (`RLIM_INFINITY`, `u64::MAX`, for none).
pub fn swap_policy(cap_ipc_lock: bool, limit: u64) -> SwapPolicy {
    if cap_ipc_lock || limit == nix::sys::resource::RLIM_INFINITY {
        SwapPolicy::LockAll
    } else {
        SwapPolicy::Warn { limit }
    }
}

/// True when this process's effective capabilities include `CAP_IPC_LOCK` (from `/proc/self/status`).
fn has_cap_ipc_lock() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Why `serve`'s memory is not locked.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The memory-lock limit is finite and the process lacks `CAP_IPC_LOCK`.
    #[error(
        "this process may lock only {} KiB of memory (RLIMIT_MEMLOCK) and lacks CAP_IPC_LOCK",
        .limit / 1024
    )]
    NotAllowed {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The kernel refused `mlockall`.
    #[error("mlockall failed: {0}")]
    Refused(nix::Error),
}

/// Locks all of `serve`'s memory, present and future, when it may lock without limit ([`swap_policy`]), so
/// that the secrets it reads (API key secrets, its CURVE secret key, a sealed store's master key) and the
/// store's pages that hold them never reach swap. Pages are locked as they are first touched
/// (`MCL_ONFAULT`): reserved but unused address space (thread stacks, the allocator's arenas) costs nothing.
pub fn lock_all_memory() -> Result<(), SwapError> {
    let limit = getrlimit(Resource::RLIMIT_MEMLOCK).map_or(0, |(soft, _)| soft);
    match swap_policy(has_cap_ipc_lock(), limit) {
        SwapPolicy::Warn { limit } => Err(SwapError::NotAllowed { limit }),
        SwapPolicy::LockAll => lock_all_pages(),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn lock_all_pages() -> Result<(), SwapError> {
    use nix::sys::mman::{MlockAllFlags, mlockall};
    let flags = MlockAllFlags::MCL_CURRENT
        | MlockAllFlags::MCL_FUTURE
        | MlockAllFlags::from_bits_retain(nix::libc::MCL_ONFAULT);
    mlockall(flags).map_err(SwapError::Refused)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn lock_all_pages() -> Result<(), SwapError> {
    // Without MCL_ONFAULT, locking future mappings would populate every reservation at once.
    Err(SwapError::Refused(nix::Error::ENOTSUP))
}

/// Raises the soft limit on open files to the hard limit, so `serve` can hold as many connections as the system
/// lets it. On failure the limits in force stay as they were.
pub fn raise_open_file_limit() -> Result<(), HardeningError> {
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|source| HardeningError::OpenFiles {
            soft: None,
            hard: None,
            source,
        })?;
    if soft >= hard {
        return Ok(());
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|source| HardeningError::OpenFiles {
        soft: Some(soft),
        hard: Some(hard),
        source,
    })
}

/// The soft limit on open files in force; `u64::MAX` when there is none or it cannot be read (then nothing is
/// refused for its sake).
pub fn open_file_limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(u64::MAX, |(soft, _)| soft)
}

/// The most connections `serve` may hold with `open_files` descriptors: `asked` when it fits with
/// [`DESCRIPTOR_RESERVE`] to spare, an error when it does not; without `asked`, [`DEFAULT_MAX_CONNECTIONS`] or
/// fewer, as many as fit (at least one).
///
/// [`cap_open_files`] then makes the cap hold.
pub fn connection_limit(asked: Option<u32>, open_files: u64) -> Result<u32, HardeningError> {
    let room = open_files.saturating_sub(DESCRIPTOR_RESERVE);
    match asked {
        Some(asked) if u64::from(asked) > room => Err(HardeningError::TooManyConnections {
            asked,
            needed: u64::from(asked) + DESCRIPTOR_RESERVE,
            limit: open_files,
            room,
        }),
        Some(asked) => Ok(asked),
        None => Ok(u32::try_from(room)
            .unwrap_or(u32::MAX)
            .clamp(1, DEFAULT_MAX_CONNECTIONS)),
    }
}

/// Lowers the soft limit on open files so that this process can open exactly `connections` more descriptors,
/// and returns the new limit. `serve` calls it once it holds every file it needs (the store and its `-wal` and
/// `-shm`, the output, libzmq's pollers, mailboxes and listening socket): from then on each connection takes
/// one of those descriptors, and once they are all taken accept(2) fails with EMFILE, and libzmq (patched,
/// vendor/README.md) leaves the waiting connections in the kernel's queue for a while instead of retrying in a
/// busy loop. The connections it has are served as before. (One accepted between the bind and this call
/// counts as one of the process's own files.)
///
/// Fails when `connections` more descriptors than those open do not fit under the hard limit (a process that
/// started with more than [`DESCRIPTOR_RESERVE`] files open), or when the open ones cannot be listed.
pub fn cap_open_files(connections: u32) -> Result<u64, HardeningError> {
    let open = open_descriptors().map_err(HardeningError::ListDescriptors)?;
    let limit = limit_leaving_free(&open, connections);
    let (_, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|source| HardeningError::OpenFiles {
            soft: None,
            hard: None,
            source,
        })?;
    if limit > hard {
        let room = hard.saturating_sub(limit - u64::from(connections));
        return Err(HardeningError::TooManyConnections {
            asked: connections,
            needed: limit,
            limit: hard,
            room,
        });
    }
    setrlimit(Resource::RLIMIT_NOFILE, limit, hard)
        .map_err(|source| HardeningError::CapOpenFiles { limit, source })?;
    Ok(limit)
}

/// The smallest limit on descriptor numbers that leaves exactly `free` numbers unused below it, when `open`
/// (sorted) are in use: the kernel gives a new descriptor the lowest free number, and refuses one at or past
/// the limit, so descriptors open past the limit take none of the room.
fn limit_leaving_free(open: &[u64], free: u32) -> u64 {
    let mut limit = u64::from(free);
    for &fd in open {
        if fd < limit {
            limit += 1;
        }
    }
    limit
}

/// The descriptors open in this process, sorted, from `/dev/fd` (Linux: `/proc/self/fd`, which a process may
/// always read for itself, dumpable or not), leaving out the one the listing itself holds.
fn open_descriptors() -> nix::Result<Vec<u64>> {
    use std::os::fd::AsRawFd;

    use nix::{dir::Dir, fcntl::OFlag, sys::stat::Mode};
    let mut listing = Dir::open(
        "/dev/fd",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let own = listing.as_raw_fd();
    let mut open = Vec::new();
    for entry in listing.iter() {
        let entry = entry?;
        let number = entry
            .file_name()
            .to_str()
            .ok()
            .and_then(|name| name.parse::<i32>().ok());
        if let Some(fd) = number
            .filter(|&fd| fd != own)
            .and_then(|fd| u64::try_from(fd).ok())
        {
            open.push(fd);
        }
    }
    open.sort_unstable();
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_connection_limit_fits_the_open_file_limit() {
        assert_eq!(connection_limit(None, 1_048_576).unwrap(), 1024);
        assert_eq!(connection_limit(None, 1024).unwrap(), 960);
        assert_eq!(connection_limit(None, 10).unwrap(), 1);
    }

    #[test]
    fn an_explicit_connection_limit_must_fit_the_open_file_limit() {
        assert_eq!(connection_limit(Some(5000), 1_048_576).unwrap(), 5000);
        assert_eq!(connection_limit(Some(960), 1024).unwrap(), 960);
        let err = connection_limit(Some(961), 1024).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--max-connections 961 needs 1025 open files, but this process may open 1024; \
             raise the limit (ulimit -n, LimitNOFILE=) or ask for at most 960"
        );
    }

    #[test]
    fn the_capped_limit_leaves_exactly_the_connections_free() {
        // Descriptors 0-9 open: ten numbers in use below the limit.
        let contiguous: Vec<u64> = (0..10).collect();
        assert_eq!(limit_leaving_free(&contiguous, 20), 30);
        // 0-2 and 5 open, 3 and 4 free: the free numbers below the limit count as room.
        assert_eq!(limit_leaving_free(&[0, 1, 2, 5], 20), 24);
        // A descriptor inherited far above the limit takes none of the room.
        assert_eq!(limit_leaving_free(&[0, 1, 2, 900], 20), 23);
        // One just above the first guess is below the limit once the lower ones are counted.
        assert_eq!(limit_leaving_free(&[0, 1, 2, 21], 20), 24);
        assert_eq!(limit_leaving_free(&[], 5), 5);
    }

    #[test]
    fn the_open_descriptors_include_a_file_just_opened_and_come_sorted() {
        let file = std::fs::File::open("Cargo.toml").unwrap();
        let fd = u64::try_from(std::os::fd::AsRawFd::as_raw_fd(&file)).unwrap();
        let open = open_descriptors().unwrap();
        assert!(open.contains(&fd), "{fd} not in {open:?}");
        assert!(open.is_sorted(), "{open:?}");
        drop(file);
    }

    #[test]
    fn all_memory_is_locked_only_when_locking_has_no_limit() {
        use nix::sys::resource::RLIM_INFINITY;
        assert_eq!(swap_policy(false, RLIM_INFINITY), SwapPolicy::LockAll);
        assert_eq!(swap_policy(true, 64 << 10), SwapPolicy::LockAll);
        assert_eq!(swap_policy(true, RLIM_INFINITY), SwapPolicy::LockAll);
        assert_eq!(
            swap_policy(false, 8 << 20),
            SwapPolicy::Warn { limit: 8 << 20 },
            "a finite limit, even a large one: MCL_FUTURE would make allocations fail past it"
        );
        assert_eq!(
            SwapError::NotAllowed { limit: 8 << 20 }.to_string(),
            "this process may lock only 8192 KiB of memory (RLIMIT_MEMLOCK) and lacks CAP_IPC_LOCK"
        );
    }

    #[test]
    fn a_secret_buffer_can_be_locked_in_memory() {
        // RLIMIT_MEMLOCK is at least 64 KiB on Linux, and root may lock without limit.
        let secret = String::from("a secret that must not reach swap");
        assert!(keep_out_of_swap(&secret));
        assert!(!keep_out_of_swap(&String::new()));
    }
}
