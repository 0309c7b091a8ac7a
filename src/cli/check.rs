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
    /// Folder of playbook files.
    #[arg(long, default_value = "playbooks")]
    playbooks: String,
    /// Folder of Sigma rules to check (repeatable): ends with
    /// `sigma: N loaded, M unsupported` and why each was refused.
    #[arg(long)]
    sigma: Vec<String>,
}

#[derive(clap::Args)]
pub struct TestArgs {
    #[arg(long, default_value = "detectors")]
    detectors: String,
    /// Folder of fixture folders.
    #[arg(long, default_value = "fixtures/detectors")]
    fixtures: String,
    #[arg(long, default_value = "playbooks")]
    playbooks: String,
    /// Folder of playbook fixture folders.
    #[arg(long, default_value = "fixtures/playbooks")]
    playbook_fixtures: String,
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
    match crate::respond::playbook::load_paths(std::slice::from_ref(&args.playbooks)) {
        Ok(p) => {
            files += crate::detect::detector_files(Path::new(&args.playbooks))
                .map_or(p.len(), |f| f.len())
        }
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
        match crate::pipeline::load_str(&text, &path) {
            Err(e) => {
                println!("{e}");
                errors += 1;
            }
            Ok(spec) => {
                if let Some(r) = &spec.respond
                    && let Err(errs) = crate::respond::compile(r, &path)
                {
                    for e in &errs {
                        println!("{e}");
                    }
                    errors += errs.len();
                }
                let notify = match &spec.notify {
                    Some(n) => match crate::notify::compile(n, &path) {
                        Ok(c) => Some(c),
                        Err(errs) => {
                            for e in &errs {
                                println!("{e}");
                            }
                            errors += errs.len();
                            None
                        }
                    },
                    None => None,
                };
                if let Some(r) = &spec.report
                    && let Err(e) = r.compile(notify.as_ref())
                {
                    // the line of the `report:` key
                    let line = text
                        .lines()
                        .position(|l| l.starts_with("report:"))
                        .map_or(1, |i| i + 1);
                    println!("{path}:{line}: {e}");
                    errors += 1;
                }
            }
        }
    }
    if errors > 0 {
        println!("{errors} invalid");
    } else {
        println!("{files} files valid");
    }
    if !args.sigma.is_empty() {
        let load = crate::detect::sigma::load_dirs(&args.sigma)?;
        for r in &load.refused {
            match r.title.as_str() {
                "" => println!("{}: unsupported: {}", r.path, r.reason),
                t => println!("{}: unsupported: {t:?}: {}", r.path, r.reason),
            }
        }
        println!(
            "sigma: {} loaded, {} unsupported",
            load.loaded,
            load.refused.len()
        );
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
    let playbooks = crate::respond::playbook::load_paths(std::slice::from_ref(&args.playbooks))
        .map_err(|errs| {
            anyhow::anyhow!(
                "{}",
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
    let root = Path::new(&args.playbook_fixtures);
    let dirs = if root.exists() {
        crate::respond::fixtures::fixture_dirs(root)?
    } else {
        Vec::new()
    };
    for d in &dirs {
        match crate::respond::fixtures::run_fixture(d, &playbooks) {
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
