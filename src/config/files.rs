//! Reads configuration files as text and expands directories into their manifest files.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::diagnostics::{Diagnostic, Diagnostics};

const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Reads a file as UTF-8 text, recording a problem when it cannot.
pub(super) fn read_text(file: &Path, diags: &mut Diagnostics) -> Option<String> {
    let bytes = match fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            diags.push(Diagnostic::new(file, "", format!("cannot read the file: {e}")));
            return None;
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(e) => {
            diags.push(
                Diagnostic::new(file, "", format!("the file is not UTF-8 text: {e}"))
                    .with_hint("configuration files must be YAML or JSON text"),
            );
            None
        }
    }
}

/// Expands directories into their manifest files; keeps files as given.
pub(super) fn manifest_files(paths: &[PathBuf], diags: &mut Diagnostics) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Err(e) => diags.push(
                Diagnostic::new(path, "", format!("cannot read connector manifests: {e}"))
                    .with_hint("check connectors.paths in the settings file"),
            ),
            Ok(meta) if meta.is_dir() => files.extend(directory_manifests(path, diags)),
            Ok(_) => files.push(path.clone()),
        }
    }
    let mut seen = BTreeSet::new();
    files.retain(|f| seen.insert(f.clone()));
    files
}

/// The manifest files directly in `dir`, in name order, without dotfiles.
fn directory_manifests(dir: &Path, diags: &mut Diagnostics) -> Vec<PathBuf> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            diags.push(Diagnostic::new(dir, "", format!("cannot list the directory: {e}")));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| entry.path())
        .filter(|path| {
            let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
            // `fs::metadata` follows symlinks, as ConfigMap mounts need.
            MANIFEST_EXTENSIONS.contains(&ext.as_str()) && fs::metadata(path).is_ok_and(|m| m.is_file())
        })
        .collect();
    files.sort();
    files
}

/// Whether a manifest file is JSON (by its extension); anything else is read as YAML.
pub(super) fn is_json(file: &Path) -> bool {
    file.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::load_connectors;
    use crate::config::test_support::{connector, write};

    #[test]
    fn directories_are_read_sorted_and_filtered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "b.yaml", connector("b", "https://r.example", "").as_bytes());
        write(root, "a.yml", connector("a", "https://r.example", "").as_bytes());
        write(root, "c.JSON", br#"{"apiVersion": "connectors.alauda.io/v1alpha1", "kind": "Connector", "metadata": {"name": "c"}, "spec": {"connectorClassName": "oci", "address": "https://r.example"}}"#);
        write(root, ".hidden.yaml", b"garbage: [");
        write(root, "notes.txt", b"garbage: [");
        fs::create_dir(root.join("..2024_01_01")).expect("mkdir");
        write(&root.join("..2024_01_01"), "x.yaml", b"garbage: [");
        fs::create_dir(root.join("nested.yaml")).expect("mkdir");
        write(&root.join("nested.yaml"), "d.yaml", b"garbage: [");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.join("..2024_01_01"), root.join("..data")).expect("symlink");
            let real = write(
                &root.join("..2024_01_01"),
                "e.yaml",
                connector("e", "https://r.example", "").as_bytes(),
            );
            std::os::unix::fs::symlink(real, root.join("e.yaml")).expect("symlink");
            fs::remove_file(root.join("..2024_01_01/x.yaml")).expect("rm");
        }
        let c = load_connectors(&[root.to_path_buf()]).unwrap_or_else(|d| panic!("{d}"));
        let names: Vec<&str> = c.iter().map(|c| c.id.name.as_str()).collect();
        #[cfg(unix)]
        assert_eq!(names, ["a", "b", "c", "e"]);
        #[cfg(not(unix))]
        assert_eq!(names, ["a", "b", "c"]);
        let files = directory_manifests(root, &mut Diagnostics::new());
        assert!(files.windows(2).all(|w| w[0] < w[1]));
        assert!(load_connectors(&[tempfile::tempdir().expect("tempdir").path().to_path_buf()])
            .is_ok_and(|c| c.is_empty()));
    }
}
