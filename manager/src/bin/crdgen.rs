//! Writes the `lanes.dev/v1` CRDs generated from the Rust types.
//!
//! `crdgen [DIR]` writes one `lanes.dev_<plural>.yaml` per CRD into DIR (default
//! `examples/kubernetes/crds`); `crdgen --check [DIR]` writes nothing and fails when a committed
//! file differs from what the types generate (CI runs it).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.first().is_some_and(|a| a == "--check");
    if check {
        args.remove(0);
    }
    let dir = PathBuf::from(args.first().map(String::as_str).unwrap_or("examples/kubernetes/crds"));
    let mut stale = Vec::new();
    let crds = lanes_manager::k8s::crds::generated();
    for (file, crd) in &crds {
        let path = dir.join(file);
        let text = lanes_manager::k8s::crds::to_yaml(crd);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(path.display().to_string());
            }
        } else if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
            eprintln!("crdgen: write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    if check {
        // A lanes.dev CRD file for a kind that is no longer generated would still be applied
        // (other groups' CRDs, like Multus', are committed by hand next to ours).
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with(&format!("{}_", lanes_manager::k8s::crds::GROUP));
            if ours && name.ends_with(".yaml") && !crds.iter().any(|(file, _)| *file == name) {
                stale.push(format!("{} (not generated: remove it)", entry.path().display()));
            }
        }
    }
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "crdgen: out of date (run `cargo run -p lanes-manager --bin crdgen`): {}",
            stale.join(", ")
        );
        ExitCode::FAILURE
    }
}
