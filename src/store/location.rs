//! Where the store lives: a SQLite file, or a PostgreSQL database named by a `postgres://` URL.

use std::{
    ffi::OsStr,
    fmt,
    path::{Path, PathBuf},
};

use super::{StoreError, postgres::PgUrl};

/// The store a command opens, as `--db` / `ZAVRO_DB` name it.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by many servers.
    Postgres(PgUrl),
}

impl Location {
    /// `postgres://…` or `postgresql://…` is a PostgreSQL URL (which must then be valid); anything else is the
    /// path of a SQLite file.
    pub fn parse(text: &str) -> Result<Location, StoreError> {
        if PgUrl::is_postgres_url(text) {
            Ok(Location::Postgres(PgUrl::parse(text)?))
        } else {
            Ok(Location::Sqlite(PathBuf::from(text)))
        }
    }

    /// Like [`Location::parse`], for a command-line value: a value that is not UTF-8 can only be a file path.
    pub fn from_os(text: &OsStr) -> Result<Location, StoreError> {
        match text.to_str() {
            Some(text) => Self::parse(text),
            None => Ok(Location::Sqlite(PathBuf::from(text))),
        }
    }

    /// The SQLite file, when the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }
}

/// The file's path, or the URL without its password: safe for every message.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => write!(f, "{url}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_schemes_are_urls_and_everything_else_a_path() {
        for url in [
            "postgres://db.example/zavro",
            "postgresql://db.example/zavro",
        ] {
            assert!(
                matches!(Location::parse(url), Ok(Location::Postgres(_))),
                "{url}"
            );
        }
        for path in [
            "zavro.db",
            "/var/lib/zavro/zavro.db",
            "postgres:/not-a-url",
            "./postgres://x",
            "mysql://x/y",
        ] {
            assert!(
                matches!(Location::parse(path), Ok(Location::Sqlite(p)) if p == Path::new(path)),
                "{path}"
            );
        }
    }

    #[test]
    fn a_bad_postgres_url_is_an_error_that_does_not_echo_it() {
        let err = Location::parse("postgres://u:hunter2@db:notaport/zavro").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("port"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn display_never_shows_the_password() {
        let location = Location::parse("postgres://alice:hunter2@db.example:5433/zavro").unwrap();
        assert_eq!(
            location.to_string(),
            "postgres://alice@db.example:5433/zavro"
        );
        assert!(!format!("{location:?}").contains("hunter2"));
        let file = Location::parse("/tmp/z.db").unwrap();
        assert_eq!(file.to_string(), "/tmp/z.db");
    }
}
