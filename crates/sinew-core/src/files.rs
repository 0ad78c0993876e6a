//! The error of Sinew's description files (robot.toml, URDF, task TOML), shared by every crate
//! that reads one, so a bad file is reported the same way whoever reads it: the path, then the
//! field, then what is wrong.

use std::path::{Path, PathBuf};

/// A description file that could not be read or has a bad value.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid for its format (TOML, URDF).
    #[error("{}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A field has a bad value.
    #[error("{}: {field}: {reason}", file.display())]
    Field {
        /// The file.
        file: PathBuf,
        /// The field, e.g. `joints[2] (elbow_flex).position_min`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl FileError {
    /// A bad value of `field` in `file`.
    pub fn field(file: &Path, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Field {
            file: file.to_owned(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A file whose syntax its parser refused.
    pub fn parse(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self::Parse {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The text of a file.
pub fn read_text(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::Io {
        path: path.to_owned(),
        source,
    })
}

/// `text` parsed as TOML into `T`, errors naming `path`.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, FileError> {
    toml::from_str(text).map_err(|e| FileError::parse(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_then_the_field() {
        let e = FileError::field(Path::new("robots/x/robot.toml"), "joints[0].kp", "negative");
        assert_eq!(e.to_string(), "robots/x/robot.toml: joints[0].kp: negative");
        let e = read_text(Path::new("/nonexistent/robot.toml")).expect_err("no such file");
        assert!(
            e.to_string().starts_with("/nonexistent/robot.toml: "),
            "{e}"
        );
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let e = parse_toml::<T>("a = 'x'", Path::new("t.toml")).expect_err("a string");
        assert!(e.to_string().starts_with("t.toml: "), "{e}");
    }
}
