//! Writes one task graph twice, as `build.ninja` and as a reprovm `manifest.rvm`, plus its source
//! files, for `benches/graph-vs-ninja.sh`.
//!
//! The graph: `--width` source files `src/sJ`, then `--layers` layers of `--width` tasks. Task J of
//! layer K runs `touch lK/tJ` and reads two files of the layer before it (`J` and `J+1`, wrapping;
//! layer 1 reads the sources), so that every task has two inputs and, from layer 2 on, two deps.
//!
//! ```sh
//! graphgen DIR                      # 5 layers x 2,000 tasks (10,000 tasks)
//! graphgen --layers 2 --width 50 DIR
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Writes the same task graph as build.ninja and as a reprovm manifest")]
struct Args {
    /// Layers of tasks.
    #[arg(long, default_value_t = 5)]
    layers: usize,
    /// Tasks per layer (and source files).
    #[arg(long, default_value_t = 2000)]
    width: usize,
    /// Directory to write into (created; existing files of the same names are replaced).
    dir: PathBuf,
}

/// The path of file `j` of layer `k` (layer 0: the sources).
fn file(k: usize, j: usize) -> String {
    if k == 0 {
        format!("src/s{j}")
    } else {
        format!("l{k}/t{j}")
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.layers >= 1 && a.width >= 2, "need at least 1 layer of 2 tasks");
    let src = a.dir.join("src");
    std::fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    for j in 0..a.width {
        std::fs::write(src.join(format!("s{j}")), format!("source {j}\n"))?;
    }
    let mut ninja = String::from("rule touch\n  command = touch $out\n\n");
    let mut rvm = String::new();
    for k in 1..=a.layers {
        for j in 0..a.width {
            let next = (j + 1) % a.width;
            let (out, in1, in2) = (file(k, j), file(k - 1, j), file(k - 1, next));
            writeln!(ninja, "build {out}: touch {in1} {in2}")?;
            let deps = if k == 1 {
                String::new()
            } else {
                format!("l{}_t{j}, l{}_t{next}", k - 1, k - 1)
            };
            writeln!(
                rvm,
                "task l{k}_t{j} {{\n  cmd = touch {out}\n  inputs = {in1}, {in2}\n  outputs = {out}\n  deps = {deps}\n}}"
            )?;
        }
    }
    std::fs::write(a.dir.join("build.ninja"), ninja)?;
    std::fs::write(a.dir.join("manifest.rvm"), rvm)?;
    println!("{} tasks in {}", a.layers * a.width, a.dir.display());
    Ok(())
}
