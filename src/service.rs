//! Telling a service manager (systemd, `Type=notify`) how `serve` is doing: ready once its socket accepts
//! connections, stopping once a signal has asked it to. Outside systemd (no `NOTIFY_SOCKET`) this does nothing.

use sd_notify::NotifyState;

/// Says the server is ready: its endpoint is bound and accepts connections. `status` is shown by
/// `systemctl status`. A failure to tell is returned for the log; the server serves either way.
pub fn ready(status: &str) -> std::io::Result<()> {
    sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)])
}

/// Says the server is stopping: it takes no further requests and exits once the ones in hand are answered.
pub fn stopping() -> std::io::Result<()> {
    sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("stopping")])
}
