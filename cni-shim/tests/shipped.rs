//! The shim as it ships (`scripts/build-shim.sh`: release-shim profile, musl
//! target): a static executable within the size and start-up floors. The
//! runtime execs it on every CNI call, so its start-up is on every ADD's path.
//!
//! Needs that build; without it the test says so and passes, except under
//! `CI=true` (scripts/test.sh builds it first).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const MAX_SIZE: u64 = 1 << 20;
const MAX_VERSION_P50_MS: f64 = 3.0;
const PT_INTERP: u32 = 3;

fn shipped() -> Option<PathBuf> {
    let triple = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    // This test runs as <target>/<profile>/deps/shipped-<hash>.
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent().and_then(Path::parent).and_then(Path::parent)?;
    let path = target.join(triple).join("release-shim/lanes-cni");
    if path.exists() {
        return Some(path);
    }
    let why = format!("SKIP: {} not built (scripts/build-shim.sh)", path.display());
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("{why}");
    None
}

/// The ELF program header types, from the 64-bit little-endian header.
fn program_header_types(elf: &[u8]) -> Vec<u32> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .map(|i| {
            let o = phoff + i * phentsize;
            u32::from_le_bytes(elf[o..o + 4].try_into().unwrap())
        })
        .collect()
}

#[test]
fn shipped_shim_is_static_small_and_starts_fast() {
    let Some(path) = shipped() else { return };
    let elf = std::fs::read(&path).unwrap();
    assert!(
        !program_header_types(&elf).contains(&PT_INTERP),
        "{} asks for a dynamic loader (PT_INTERP): the musl build should be static",
        path.display()
    );
    assert!(
        elf.len() as u64 <= MAX_SIZE,
        "{} is {} bytes, over 1 MiB",
        path.display(),
        elf.len()
    );

    let mut samples: Vec<f64> = (0..60)
        .map(|_| {
            let start = Instant::now();
            let out = Command::new(&path)
                .env_clear()
                .env("CNI_COMMAND", "VERSION")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            assert!(out.status.success());
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["supportedVersions"].as_array().map(Vec::len), Some(5), "{v}");
            ms
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let p50 = samples[samples.len() / 2];
    assert!(p50 <= MAX_VERSION_P50_MS, "VERSION exec→exit p50 {p50:.2} ms");
}
