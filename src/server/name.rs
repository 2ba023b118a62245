//! The server's name (`serve --name`), written into every audit row it writes so that the rows of several servers
//! sharing one store can be told apart: the host name unless one is given.

use crate::untrusted;

/// Most characters a server name may have: it is shown in every row of `audit query`.
pub const MAX_CHARS: usize = 64;

/// Why a name cannot be a server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("a server name cannot be empty")]
    Empty,
    /// Longer than [`MAX_CHARS`].
    #[error("server name \"{}\" has {chars} characters; at most {MAX_CHARS} are allowed", untrusted::bounded(.name, MAX_CHARS + 1))]
    TooLong {
        /// The name given.
        name: String,
        /// Its length in characters.
        chars: usize,
    },
    /// Holds a control character or an invisible formatting one (a newline, an escape, a bidirectional override).
    #[error(
        "server name \"{}\" is not printable: it holds control or invisible formatting characters",
        untrusted::bounded(.0, MAX_CHARS + 1)
    )]
    NotPrintable(String),
    /// No name was given and the host name could not be read or is not a valid name.
    #[error("cannot name this server after its host name ({0}); give a name with --name")]
    NoHostName(String),
}

/// Checks a server name: not empty, printable, at most [`MAX_CHARS`] characters.
pub fn check(name: &str) -> Result<(), NameError> {
    let chars = name.chars().count();
    if chars == 0 {
        Err(NameError::Empty)
    } else if !untrusted::is_printable(name) {
        Err(NameError::NotPrintable(name.to_owned()))
    } else if chars > MAX_CHARS {
        Err(NameError::TooLong {
            name: name.to_owned(),
            chars,
        })
    } else {
        Ok(())
    }
}

/// The name given with `--name`, checked, or else the host name (which must pass the same checks).
pub fn resolve(given: Option<&str>) -> Result<String, NameError> {
    if let Some(name) = given {
        check(name)?;
        return Ok(name.to_owned());
    }
    let host = nix::unistd::gethostname()
        .map_err(|e| NameError::NoHostName(std::io::Error::from(e).to_string()))?
        .into_string()
        .map_err(|_| NameError::NoHostName("it is not UTF-8".into()))?;
    check(&host).map_err(|e| NameError::NoHostName(e.to_string()))?;
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_names_up_to_64_characters_pass() {
        for name in ["alpha", "db-1.example.org", "zürich 2", &"é".repeat(64)] {
            assert_eq!(resolve(Some(name)).as_deref(), Ok(name));
        }
    }

    #[test]
    fn empty_long_or_unprintable_names_are_refused_on_one_line() {
        assert_eq!(check(""), Err(NameError::Empty));
        assert!(matches!(
            check(&"a".repeat(65)),
            Err(NameError::TooLong { chars: 65, .. })
        ));
        for bad in [
            "a\nb",
            "tab\there",
            "\u{1b}[31mred",
            "right\u{202e}left",
            "zero\u{200b}width",
        ] {
            let err = check(bad).unwrap_err();
            assert!(matches!(err, NameError::NotPrintable(_)), "{bad:?}");
            let message = err.to_string();
            assert!(
                !message.contains('\n')
                    && !message.contains('\u{1b}')
                    && !message.contains('\u{202e}'),
                "{message:?}"
            );
        }
    }

    #[test]
    fn without_a_name_the_host_name_is_used() {
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        assert_eq!(resolve(None), Ok(host));
    }
}
