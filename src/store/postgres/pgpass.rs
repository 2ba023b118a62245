//! The password file, as libpq reads it: `PGPASSFILE`, else `~/.pgpass`, consulted only when the URL has no
//! password.
//!
//! Each line is `hostname:port:database:username:password`; a field that is exactly `*` matches anything, `\:`
//! and `\\` stand for `:` and `\`, blank lines and lines starting with `#` are skipped, and the first matching
//! line wins. Like libpq, a file that is not a plain file, or that the group or others may read or write, is
//! ignored with a warning, so a password that others could read is never used.

use std::{
    env, fs,
    io::ErrorKind,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use zeroize::Zeroizing;

/// The environment variable naming the password file (libpq's).
pub const PASSFILE_ENV: &str = "PGPASSFILE";

/// What looking in the password file found.
#[derive(Default)]
pub struct Lookup {
    /// The password of the first matching line.
    pub password: Option<Zeroizing<String>>,
    /// Why the file was not read, for the user (it is then ignored, as libpq ignores it).
    pub warning: Option<String>,
}

/// The password file to read: `PGPASSFILE`, else `~/.pgpass`.
pub fn passfile_path() -> Option<PathBuf> {
    match env::var_os(PASSFILE_ENV) {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => dirs::home_dir().map(|home| home.join(".pgpass")),
    }
}

/// The password for this connection from the file at `path`, if a line matches.
pub fn lookup(path: &Path, host: &str, port: u16, dbname: &str, user: &str) -> Lookup {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Lookup::default(),
        Err(e) => return warn(format!("cannot read password file {}: {e}", path.display())),
    };
    if !meta.is_file() {
        return warn(format!(
            "password file {} is not a plain file; it is ignored",
            path.display()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return warn(format!(
            "password file {} has group or world access; permissions should be u=rw (0600) or less; it is \
             ignored",
            path.display()
        ));
    }
    // Bytes, wiped when dropped; never converted lossily, which would turn a password into another one.
    let bytes = match fs::read(path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) => return warn(format!("cannot read password file {}: {e}", path.display())),
    };
    let port = port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    let mut found = Lookup::default();
    for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
        let Ok(line) = std::str::from_utf8(line) else {
            // Skipped, as a line of the wrong shape is; said once, without its content.
            found.warning.get_or_insert_with(|| {
                format!(
                    "password file {}: line {} is not UTF-8; it is skipped",
                    path.display(),
                    index + 1
                )
            });
            continue;
        };
        if let Some(password) = matching_password(line, &wanted) {
            // libpq: the first matching line decides, and an empty password there means none.
            found.password = (!password.is_empty()).then_some(password);
            break;
        }
    }
    found
}

fn warn(message: String) -> Lookup {
    Lookup {
        password: None,
        warning: Some(message),
    }
}

/// The password of `line` when its first four fields match `wanted` (host, port, database, user).
fn matching_password(line: &str, wanted: &[&str; 4]) -> Option<Zeroizing<String>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let fields = split_fields(line);
    if fields.len() < 5 {
        return None;
    }
    let matches = fields
        .iter()
        .zip(wanted)
        .all(|(field, wanted)| field.wildcard || field.text.as_str() == *wanted);
    matches.then(|| Zeroizing::new(fields[4].text.to_string()))
}

/// One field of a line: its text with escapes removed, and whether it was a bare `*`.
struct Field {
    text: Zeroizing<String>,
    wildcard: bool,
}

/// Splits at every `:` not escaped by `\`; `\x` stands for `x`.
fn split_fields(line: &str) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut text = Zeroizing::new(String::new());
    let mut raw_star = true;
    let mut chars = line.chars();
    let mut finish = |text: &mut Zeroizing<String>, raw_star: &mut bool| {
        let wildcard = *raw_star && text.as_str() == "*";
        fields.push(Field {
            text: std::mem::take(text),
            wildcard,
        });
        *raw_star = true;
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                raw_star = false;
                if let Some(escaped) = chars.next() {
                    text.push(escaped);
                }
            }
            ':' => finish(&mut text, &mut raw_star),
            c => text.push(c),
        }
    }
    finish(&mut text, &mut raw_star);
    fields
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;

    use super::*;

    fn file(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    fn password(path: &Path, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
        let found = lookup(path, host, port, db, user);
        assert!(found.warning.is_none(), "{:?}", found.warning);
        found.password.map(|p| p.to_string())
    }

    #[test]
    fn first_matching_line_wins_with_wildcards_and_escapes() {
        let (_dir, path) = file(
            "# comment\n\
             \n\
             db.example:5432:zavro:alice:first\n\
             db.example:*:zavro:alice:second\n\
             *:*:*:bob:b\\:ob\\\\pw\n\
             /tmp/s\\:ock:5433:*:carol:carol-pw\r\n\
             \\*:5432:*:dave:literal-star\n\
             short:line\n",
            0o600,
        );
        assert_eq!(
            password(&path, "db.example", 5432, "zavro", "alice").as_deref(),
            Some("first")
        );
        assert_eq!(
            password(&path, "db.example", 6000, "zavro", "alice").as_deref(),
            Some("second")
        );
        assert_eq!(
            password(&path, "anywhere", 1, "x", "bob").as_deref(),
            Some("b:ob\\pw")
        );
        assert_eq!(
            password(&path, "/tmp/s:ock", 5433, "zavro", "carol").as_deref(),
            Some("carol-pw")
        );
        assert_eq!(password(&path, "db.example", 5432, "other", "alice"), None);
        assert_eq!(password(&path, "elsewhere", 5432, "zavro", "dave"), None);
        assert_eq!(
            password(&path, "*", 5432, "zavro", "dave").as_deref(),
            Some("literal-star")
        );
        assert_eq!(password(&path, "short", 5432, "zavro", "line"), None);
    }

    #[test]
    fn an_empty_password_on_the_first_matching_line_means_none() {
        let (_dir, path) = file("*:*:*:alice:\n*:*:*:*:fallback\n", 0o600);
        assert_eq!(password(&path, "h", 5432, "d", "alice"), None);
        assert_eq!(
            password(&path, "h", 5432, "d", "bob").as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_is_skipped_with_a_warning_never_converted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        fs::write(
            &path,
            b"h1:*:*:*:caf\xe9-pw\nh2:*:*:*:good-pw\n*:*:*:*:fallback\n",
        )
        .unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        let found = lookup(&path, "h2", 5432, "d", "u");
        assert_eq!(
            found.password.as_deref().map(String::as_str),
            Some("good-pw")
        );
        let warning = found.warning.expect("a warning");
        assert!(warning.contains("line 1 is not UTF-8"), "{warning}");
        assert!(!warning.contains("caf"), "{warning}");
        // The line meant for h1 is skipped: the next matching line is used, never a converted password.
        let found = lookup(&path, "h1", 5432, "d", "u");
        assert_eq!(
            found.password.as_deref().map(String::as_str),
            Some("fallback")
        );
    }

    #[test]
    fn a_file_others_may_read_is_ignored_with_a_warning() {
        for mode in [0o640, 0o604, 0o620, 0o602] {
            let (_dir, path) = file("*:*:*:*:secret-pw\n", mode);
            let found = lookup(&path, "h", 5432, "d", "u");
            assert!(found.password.is_none(), "mode {mode:o}");
            let warning = found.warning.expect("a warning");
            assert!(warning.contains("group or world access"), "{warning}");
            assert!(!warning.contains("secret-pw"), "{warning}");
        }
        let (_dir, path) = file("*:*:*:*:secret-pw\n", 0o400);
        assert_eq!(
            password(&path, "h", 5432, "d", "u").as_deref(),
            Some("secret-pw")
        );
    }

    #[test]
    fn a_missing_file_is_silent_and_a_directory_is_ignored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let found = lookup(&dir.path().join("none"), "h", 5432, "d", "u");
        assert!(found.password.is_none() && found.warning.is_none());
        let found = lookup(dir.path(), "h", 5432, "d", "u");
        assert!(found.password.is_none());
        assert!(found.warning.unwrap().contains("not a plain file"));
    }
}
