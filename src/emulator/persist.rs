//! The optional state file: JSON, written atomically (temporary file + rename) with mode 0600,
//! because it holds the CAs' private keys.

//!
//! Generic over the state type, so that this module does not depend on `state` (which saves through
//! it): no use cycle.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

const VERSION: u32 = 1;

#[derive(Deserialize)]
struct StateFile<S> {
    version: u32,
    state: S,
}

#[derive(Serialize)]
struct StateFileRef<'a, S> {
    version: u32,
    state: &'a S,
}

/// Loads the state; a missing file is an empty account.
pub(crate) fn load<S: DeserializeOwned + Default>(path: &Path) -> io::Result<S> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(S::default()),
        Err(e) => return Err(e),
    };
    let file: StateFile<S> = serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot read emulator state file {}: {e}", path.display()),
        )
    })?;
    if file.version != VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "emulator state file {} has unsupported version {}",
                path.display(),
                file.version
            ),
        ));
    }
    Ok(file.state)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Saves the state: writes a temporary file next to `path` (mode 0600), syncs it, renames it over.
pub(crate) fn save<S: Serialize>(path: &Path, state: &S) -> io::Result<()> {
    let json = serde_json::to_vec(&StateFileRef {
        version: VERSION,
        state,
    })
    .map_err(io::Error::other)?;
    let tmp = temp_path(path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut file = opts.open(&tmp)?;
    // A pre-existing temporary file keeps its old mode: tighten it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(&json)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::state::State;

    #[test]
    fn state_survives_a_round_trip_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load::<State>(&path).unwrap().cas.len(), 0);
        let state = State {
            last_id: 7,
            ..State::default()
        };
        save(&path, &state).unwrap();
        assert_eq!(load::<State>(&path).unwrap().last_id, 7);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!temp_path(&path).exists());
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(
            load::<State>(&path).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
