//! `threatpilot validate` (every pipeline and detector file, with
//! line-accurate errors) and `threatpilot test` (the detector fixtures).

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Folder of detector files.
    #[arg(long, default_value = "detectors")]
    detectors: String,
    /// Folder of pipeline files.
    #[arg(long, default_value = "pipelines")]
    pipelines: String,
}

#[derive(clap::Args)]
pub struct TestArgs {
    #[arg(long, default_value = "detectors")]
    detectors: String,
    /// Folder of fixture folders.
    #[arg(long, default_value = "fixtures/detectors")]
    fixtures: String,
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut errors = 0;
    let mut files = 0;
    match crate::detect::load_dir(Path::new(&args.detectors)) {
        Ok(d) => files += d.len(),
        Err(errs) => {
            for e in &errs {
                println!("{e}");
            }
            errors += errs.len();
        }
    }
    for p in crate::detect::detector_files(Path::new(&args.pipelines))? {
        files += 1;
        let path = p.display().to_string();
        let text = std::fs::read_to_string(&p)?;
        if let Err(e) = crate::pipeline::load_str(&text, &path) {
            println!("{e}");
            errors += 1;
        }
    }
    if errors > 0 {
        println!("{errors} invalid");
        return Ok(ExitCode::from(1));
    }
    println!("{files} files valid");
    Ok(ExitCode::SUCCESS)
}

pub fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let dirs = crate::detect::fixtures::fixture_dirs(Path::new(&args.fixtures))?;
    let (mut passed, mut failed) = (0, 0);
    for d in &dirs {
        match crate::detect::fixtures::run_fixture(d, Path::new(&args.detectors)) {
            Ok(_) => {
                passed += 1;
                println!("ok   {}", d.display());
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {e}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
