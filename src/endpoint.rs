//! Turning what the user typed (`127.0.0.1:12345`, `tcp://…`, `ipc://…`) into a ZeroMQ endpoint.

/// Which side of the connection the endpoint is for: only a server may ask the OS to pick a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `zavro serve` binds.
    Bind,
    /// `zavro send` connects.
    Connect,
}

/// Resolves `HOST:PORT` to `tcp://HOST:PORT` and passes a full ZeroMQ endpoint through unchanged.
///
/// When binding, port `*` or `0` becomes `*`, which lets the OS pick a free port.
pub fn resolve(text: &str, side: Side) -> Result<String, String> {
    if text.contains("://") {
        return Ok(text.to_owned());
    }
    let bad = || {
        format!(
            "endpoint {text:?} is not HOST:PORT (e.g. 127.0.0.1:12345) or a ZeroMQ endpoint (tcp://…, ipc://…)"
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() {
        return Err(bad());
    }
    let port = match (port, side) {
        ("*" | "0", Side::Bind) => "*",
        ("*" | "0", Side::Connect) => {
            return Err(format!("endpoint {text:?} needs a real port to connect to"));
        }
        (p, _) if p.parse::<u16>().is_ok() => p,
        _ => return Err(bad()),
    };
    Ok(format!("tcp://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_becomes_tcp() {
        assert_eq!(
            resolve("127.0.0.1:12345", Side::Connect).unwrap(),
            "tcp://127.0.0.1:12345"
        );
        assert_eq!(resolve("[::1]:5", Side::Connect).unwrap(), "tcp://[::1]:5");
    }

    #[test]
    fn wildcard_ports_only_bind() {
        assert_eq!(
            resolve("127.0.0.1:0", Side::Bind).unwrap(),
            "tcp://127.0.0.1:*"
        );
        assert_eq!(
            resolve("127.0.0.1:*", Side::Bind).unwrap(),
            "tcp://127.0.0.1:*"
        );
        assert!(resolve("127.0.0.1:0", Side::Connect).is_err());
    }

    #[test]
    fn full_endpoints_pass_through_and_junk_is_refused() {
        assert_eq!(
            resolve("ipc:///tmp/z.sock", Side::Bind).unwrap(),
            "ipc:///tmp/z.sock"
        );
        for junk in ["12345", ":12345", "host:port", "host:99999"] {
            assert!(resolve(junk, Side::Connect).is_err(), "{junk}");
        }
    }
}
