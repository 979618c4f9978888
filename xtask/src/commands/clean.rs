//! `cargo xtask clean`: removes what xtask placed under the target directory.
//!
//! Placed images, packages, emulation reports and the scratch folders of `test` and `bench` go;
//! cargo's own build output stays (that is `cargo clean`), and so does the emulator's venv unless
//! `--all`. The test certificate lives outside the repository and is never touched.

use crate::base::error::{Context, Result};
use crate::base::layout::{Layout, display_path};
use crate::base::workspace::Workspace;

/// `cargo xtask clean`'s options.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// `--all`: the emulator's venv too.
    pub all: bool,
}

/// The `clean` command: removes `Layout::xtask_dirs`, and with `--all` the emulator's venv too.
///
/// # Errors
/// A folder could not be removed.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    remove(&ws.layout, opts.all)
}

/// Removes `layout`'s xtask folders, and with `all` the venv.
fn remove(layout: &Layout, all: bool) -> Result<()> {
    let mut dirs = layout.xtask_dirs();
    if all {
        dirs.push(layout.emu_venv());
    }
    let mut removed = 0;
    for dir in &dirs {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
            eprintln!(
                "  removed {}",
                display_path(
                    dir,
                    layout.target_dir.parent().unwrap_or(&layout.target_dir)
                )
            );
            removed += 1;
        }
    }
    if removed == 0 {
        eprintln!("  nothing to remove");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_what_xtask_placed_and_keeps_the_rest() {
        let root = std::env::temp_dir().join(format!("xtask-clean-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let layout = Layout::new(root.join("target"));
        for d in layout.xtask_dirs() {
            std::fs::create_dir_all(d.join("x")).unwrap();
        }
        std::fs::create_dir_all(layout.emu_venv().join("bin")).unwrap();
        std::fs::create_dir_all(layout.target_dir.join("debug")).unwrap();
        let cert = root.join("cert");
        std::fs::create_dir_all(&cert).unwrap();

        remove(&layout, false).unwrap();
        assert!(layout.xtask_dirs().iter().all(|d| !d.exists()));
        assert!(layout.emu_venv().exists(), "the venv stays without --all");
        assert!(
            layout.target_dir.join("debug").exists(),
            "cargo's output stays"
        );

        remove(&layout, true).unwrap();
        assert!(!layout.emu_venv().exists());
        assert!(cert.exists() && layout.target_dir.join("debug").exists());
        // Nothing left to remove is not an error.
        remove(&layout, true).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_certificate_folder_is_never_under_target() {
        // The certificate's default home is outside any workspace (cert.rs); clean only removes
        // folders under the target directory.
        let layout = Layout::new("/w/target");
        for d in layout.xtask_dirs() {
            assert!(d.starts_with("/w/target"), "{}", d.display());
        }
    }
}
