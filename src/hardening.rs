//! Process-wide protections set at start-up: no core dumps, secrets kept out of swap, and enough descriptors.

use std::ptr::NonNull;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Open files `serve` keeps for itself beside its connections: the store and its `-wal` and `-shm` files, the
/// output, standard streams, and libzmq's own (its I/O threads' poller and mailboxes, the listening socket).
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
/// A server that runs out of descriptors cannot accept, and libzmq then retries the accept in a busy loop;
/// keeping connections below the limit is what lets it go on serving the peers it has.
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
    fn a_secret_buffer_can_be_locked_in_memory() {
        // RLIMIT_MEMLOCK is at least 64 KiB on Linux, and root may lock without limit.
        let secret = String::from("a secret that must not reach swap");
        assert!(keep_out_of_swap(&secret));
        assert!(!keep_out_of_swap(&String::new()));
    }
}
