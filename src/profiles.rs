//! The credentials file: named profiles holding a key id, its secret, a default endpoint and the server's CURVE
//! public key, like the AWS CLI's
//! `~/.aws/credentials`. It lives at `zavro/credentials` in the user's configuration directory
//! (`$XDG_CONFIG_HOME`, usually `~/.config`), must be private (mode 0600) like the store, and reads:
//!
//! ```text
//! [default]
//! key = ZK3F9A0C17B2E45D88
//! secret = …
//! endpoint = tcp://127.0.0.1:12345
//! server_key = rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7
//!
//! [profile staging]
//! key = …
//! ```
//!
//! A section is `[NAME]` or `[profile NAME]`; lines starting with `#` or `;` are comments.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use zeroize::Zeroizing;

/// The profile used when neither `--profile` nor `ZAVRO_PROFILE` names one (and only if the file has it).
pub const DEFAULT_PROFILE: &str = "default";

/// One named profile; every field is optional.
#[derive(Debug, Default)]
pub struct Profile {
    /// The profile's name.
    pub name: String,
    /// API key id.
    pub key: Option<String>,
    /// The key's secret, wiped from memory when dropped.
    pub secret: Option<Zeroizing<String>>,
    /// The server `send` and `bench` use when no ENDPOINT is given.
    pub endpoint: Option<String>,
    /// The server's CURVE public key in Z85, which `send` and `bench` pin unless told otherwise.
    pub server_key: Option<String>,
}

/// Why the credentials file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A file-system operation failed.
    #[error("credentials file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Other users may read or write the file, which holds secrets.
    #[error(
        "credentials file {path} is readable or writable by other users (mode {mode:o}); it holds secrets: chmod 600 {path}"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not a section header, a `name = value` setting or a comment.
    #[error("credentials file {path}, line {line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The named profile is not in the file.
    #[error("no profile {name:?} in {path}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The profile asked for.
        name: String,
    },
    /// `keys add --save-profile` would replace a profile.
    #[error("profile {name:?} already exists in {path}; give --force to replace it")]
    Exists {
        /// The file.
        path: PathBuf,
        /// The profile.
        name: String,
    },
    /// The profile name cannot be written as a section header.
    #[error("{0:?} is not a profile name (letters, digits, '.', '-' and '_')")]
    BadName(String),
}

/// The default location, `<config dir>/zavro/credentials`, or `None` when there is no configuration directory.
pub fn default_path() -> Option<PathBuf> {
    dirs::config_dir().map(|dir| dir.join("zavro").join("credentials"))
}

/// True when `name` can be a profile name.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A section of the file: its name and the range of lines it spans, header included.
struct Section {
    name: String,
    lines: std::ops::Range<usize>,
}

/// The section name of a header line, or `None` when the line is not a header.
fn header(line: &str) -> Option<&str> {
    let inner = line.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    Some(inner.strip_prefix("profile ").map_or(inner, str::trim))
}

/// Splits the file into sections, checking every line.
fn sections(path: &Path, text: &str) -> Result<Vec<Section>, ProfileError> {
    let mut sections: Vec<Section> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        let syntax = |message: &str| ProfileError::Syntax {
            path: path.to_owned(),
            line: index + 1,
            message: message.into(),
        };
        if let Some(name) = header(line) {
            if let Some(last) = sections.last_mut() {
                last.lines.end = index;
            }
            sections.push(Section {
                name: name.to_owned(),
                lines: index..index + 1,
            });
        } else if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            // Blank lines and comments belong to the section above them.
        } else if !trimmed.contains('=') {
            return Err(syntax("expected [NAME], name = value, or a # comment"));
        } else if sections.is_empty() {
            return Err(syntax("a setting before the first [NAME] section"));
        }
        if let Some(last) = sections.last_mut() {
            last.lines.end = index + 1;
        }
    }
    Ok(sections)
}

/// Reads the file, refusing it when others may read it; `None` when it does not exist.
fn read_private(path: &Path) -> Result<Option<Zeroizing<String>>, ProfileError> {
    let io = |source| ProfileError::Io {
        path: path.to_owned(),
        source,
    };
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ProfileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(Some(Zeroizing::new(fs::read_to_string(path).map_err(io)?)))
}

/// Loads profile `name` from the file at `path`; `Ok(None)` when the file or the profile does not exist.
pub fn load(path: &Path, name: &str) -> Result<Option<Profile>, ProfileError> {
    let Some(text) = read_private(path)? else {
        return Ok(None);
    };
    let lines: Vec<&str> = text.lines().collect();
    let Some(section) = sections(path, &text)?
        .into_iter()
        .rev()
        .find(|s| s.name == name)
    else {
        return Ok(None);
    };
    let mut profile = Profile {
        name: name.to_owned(),
        ..Profile::default()
    };
    for line in &lines[section.lines.start + 1..section.lines.end] {
        let Some((field, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match field.trim() {
            "key" => profile.key = Some(value.to_owned()),
            "secret" => profile.secret = Some(Zeroizing::new(value.to_owned())),
            "endpoint" => profile.endpoint = Some(value.to_owned()),
            "server_key" => profile.server_key = Some(value.to_owned()),
            // Unknown settings are ignored, so a newer zavro's file still works here.
            _ => {}
        }
    }
    Ok(Some(profile))
}

/// Writes `profile` into the file at `path` (creating it and its directory privately), keeping every other
/// profile; an existing profile of the same name is replaced only with `force`. The file is replaced
/// atomically, so a crash leaves the old or the new file, never half of one.
pub fn save(path: &Path, profile: &Profile, force: bool) -> Result<(), ProfileError> {
    if !is_valid_name(&profile.name) {
        return Err(ProfileError::BadName(profile.name.clone()));
    }
    let io = |source| ProfileError::Io {
        path: path.to_owned(),
        source,
    };
    let old = read_private(path)?.unwrap_or_default();
    let sections = sections(path, &old)?;
    let replaced: Vec<&Section> = sections.iter().filter(|s| s.name == profile.name).collect();
    if !replaced.is_empty() && !force {
        return Err(ProfileError::Exists {
            path: path.to_owned(),
            name: profile.name.clone(),
        });
    }
    // Room for everything up front: a growing string would leave copies of secrets behind in freed memory.
    let mut text = Zeroizing::new(String::with_capacity(old.len() + 1024));
    for (index, line) in old.lines().enumerate() {
        if !replaced.iter().any(|s| s.lines.contains(&index)) {
            text.push_str(line);
            text.push('\n');
        }
    }
    if !text.is_empty() && !text.ends_with("\n\n") {
        text.push('\n');
    }
    text.push('[');
    text.push_str(&profile.name);
    text.push_str("]\n");
    for (field, value) in [
        ("key", profile.key.as_deref()),
        ("secret", profile.secret.as_deref().map(String::as_str)),
        ("endpoint", profile.endpoint.as_deref()),
        ("server_key", profile.server_key.as_deref()),
    ] {
        if let Some(value) = value {
            // Piece by piece, so no temporary string holds the secret outside `Zeroizing`.
            for piece in [field, " = ", value, "\n"] {
                text.push_str(piece);
            }
        }
    }

    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io)?;
    }
    let temporary = path.with_extension("new");
    let _ = fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&temporary, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str, key: &str) -> Profile {
        Profile {
            name: name.into(),
            key: Some(key.into()),
            secret: Some(Zeroizing::new(format!("secret-of-{key}"))),
            endpoint: Some("tcp://127.0.0.1:5555".into()),
            server_key: Some("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7".into()),
        }
    }

    #[test]
    fn saved_profiles_load_back_and_others_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zavro/credentials");
        save(&path, &profile("default", "ZK1"), false).unwrap();
        save(&path, &profile("prod", "ZK2"), false).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load(&path, "prod").unwrap().unwrap();
        assert_eq!(loaded.key.as_deref(), Some("ZK2"));
        assert_eq!(
            loaded.secret.as_deref().map(String::as_str),
            Some("secret-of-ZK2")
        );
        assert_eq!(loaded.endpoint.as_deref(), Some("tcp://127.0.0.1:5555"));
        assert_eq!(
            loaded.server_key.as_deref(),
            Some("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"),
            "a Z85 key keeps its '=', ':' and '%' through the file"
        );
        assert!(load(&path, "staging").unwrap().is_none());
        assert!(load(&dir.path().join("absent"), "prod").unwrap().is_none());

        assert!(matches!(
            save(&path, &profile("prod", "ZK3"), false),
            Err(ProfileError::Exists { .. })
        ));
        save(&path, &profile("prod", "ZK3"), true).unwrap();
        assert_eq!(
            load(&path, "prod").unwrap().unwrap().key.as_deref(),
            Some("ZK3")
        );
        assert_eq!(
            load(&path, "default").unwrap().unwrap().key.as_deref(),
            Some("ZK1")
        );
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("[prod]").count(), 1, "{text}");
    }

    #[test]
    fn aws_style_headers_comments_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let write = |text: &str, mode| {
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        };
        write(
            "# mine\n[profile ci]\n; note\nkey = ZKCI\nregion = x\n",
            0o600,
        );
        assert_eq!(
            load(&path, "ci").unwrap().unwrap().key.as_deref(),
            Some("ZKCI")
        );
        write("key = ZK\n", 0o600);
        assert!(matches!(
            load(&path, "ci"),
            Err(ProfileError::Syntax { line: 1, .. })
        ));
        write("[ci]\nnonsense\n", 0o600);
        assert!(matches!(
            load(&path, "ci"),
            Err(ProfileError::Syntax { line: 2, .. })
        ));
        write("[ci]\nkey = ZK\n", 0o644);
        assert!(matches!(
            load(&path, "ci"),
            Err(ProfileError::TooOpen { mode: 0o644, .. })
        ));
        assert!(matches!(
            save(&path, &profile("a b", "ZK"), false),
            Err(ProfileError::BadName(_))
        ));
    }
}
