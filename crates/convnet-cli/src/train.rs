//! `convnet train` and `convnet evaluate`.

use super::data;
use super::interrupt::Interrupts;
use convnet::callbacks::{BackupAndRestore, CSVLogger, Callback, SaveFreq, TensorBoard};
use convnet::data::Augmentation;
use convnet::initializers::set_random_seed;
use convnet::model::Model;
use convnet::train::{Communicator, Compiled, CompiledModel, FitOptions, LossFn, Optimizer};
use convnet::Error;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// A model file (.keras, .h5, config.json, .onnx) or a built-in model name.
    #[arg(default_value = "fmnist-cnn")]
    model: String,
    /// fashion-mnist, fashion-mnist-sample, mnist, a folder of IDX files or of class
    /// folders of images, an .npz file, or X.npy (with --labels).
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    /// Targets for .npy data.
    #[arg(long)]
    labels: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// sgd, adam, adamw, rmsprop or adagrad (default: the model file's, else adam).
    #[arg(long)]
    optimizer: Option<String>,
    #[arg(long)]
    learning_rate: Option<f64>,
    /// A Keras loss name (default: the model file's, else sparse_categorical_crossentropy).
    #[arg(long)]
    loss: Option<String>,
    #[arg(long, default_value_t = 0.0)]
    validation_split: f64,
    /// Fixes initial weights, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long)]
    no_shuffle: bool,
    /// Where to save the trained model (.keras).
    #[arg(long, default_value = "model.keras")]
    output: PathBuf,
    /// Also log each epoch's metrics to this CSV file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Augment the training images: `flip`, `translate` / `translate=N` (shifts of up to
    /// N pixels, 2 by default), `crop=N` (pad by N and crop back: the same shifts).
    #[arg(long)]
    augment: Option<String>,
    /// Freeze the layers named NAME, or starting with PREFIX for `PREFIX*`, nested
    /// models' layers included (Keras's `layer.trainable = False`); repeatable.
    #[arg(long, value_name = "NAME|PREFIX*")]
    freeze: Vec<String>,
    /// Unfreeze layers the same way, after `--freeze` (fine-tuning the top of a frozen
    /// base: `--freeze base --unfreeze 'block5_*'`); repeatable.
    #[arg(long, value_name = "NAME|PREFIX*")]
    unfreeze: Vec<String>,
    /// Before training, learn the mean and variance of each Normalization layer that
    /// reads the model's input from the training data (Keras's `norm.adapt(x_train)`).
    #[arg(long)]
    adapt: bool,
    /// Write TensorBoard event files (Keras's TensorBoard callback: epoch scalars and
    /// weight histograms) under this folder; `tensorboard --logdir DIR` shows them.
    #[arg(long, value_name = "DIR")]
    tensorboard: Option<PathBuf>,
    /// Back up the whole training state in this folder (Keras's BackupAndRestore) at
    /// each epoch's end and on Ctrl-C; the same command run again resumes from it, and
    /// a finished run deletes it.
    #[arg(long, value_name = "DIR")]
    backup: Option<PathBuf>,
    /// With --backup: also back up every N steps.
    #[arg(long, value_name = "N", requires = "backup")]
    backup_every: Option<u64>,
    /// Draw the loss and metric curves into this PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// 0 silent, 1 progress bar, 2 one line per epoch.
    #[arg(long, default_value_t = 1)]
    verbose: u8,
    /// Train data-parallel over MPI, one rank per process that `mpirun -np N` started:
    /// --batch-size is the global batch, each rank takes its slice, and only rank 0
    /// prints and writes files. A build with the `mpi` feature does this by itself
    /// when started by mpirun; a build without it refuses the flag.
    #[arg(long)]
    distributed: bool,
    /// In a distributed run, BatchNormalization normalizes by the whole global batch's
    /// statistics (pooled over the ranks) instead of each rank's slice.
    #[arg(long)]
    sync_batch_norm: bool,
}

/// The ranks of a distributed run: MPI's when this build has it and was asked or
/// started by an MPI launcher; None for one process.
fn communicator(args: &TrainArgs) -> Result<Option<Arc<dyn Communicator>>, Error> {
    #[cfg(feature = "mpi")]
    {
        use convnet::train::MpiCommunicator;
        if args.distributed || MpiCommunicator::launched() {
            let comm: Arc<dyn Communicator> = Arc::new(MpiCommunicator::init()?);
            return Ok(Some(comm));
        }
        Ok(None)
    }
    #[cfg(not(feature = "mpi"))]
    {
        if args.distributed {
            return Err(Error::invalid(
                "--distributed",
                "--distributed needs MPI, and this convnet was built without it: build it with \
                 `cargo build --release -p convnet-cli --features mpi` (MPICH: apt-get install mpich \
                 libmpich-dev clang libclang-dev) and start it with mpirun",
            ));
        }
        Ok(None)
    }
}

/// Compiles `model` unless it came compiled, nothing overrides its settings and its
/// trainable weights are the ones its optimizer's state was kept for (`refreeze`:
/// `--freeze`/`--unfreeze` changed them, so it is compiled anew from the same settings,
/// as Keras asks after changing `trainable`).
fn compile(
    (model, saved): (Model, Option<Compiled>),
    optimizer: Option<&str>,
    learning_rate: Option<f64>,
    loss: Option<&str>,
    refreeze: bool,
) -> Result<CompiledModel, Error> {
    if optimizer.is_none() && learning_rate.is_none() && loss.is_none() {
        if let Some(mut existing) = saved {
            if refreeze {
                // The same settings, loss and metrics; a fresh optimizer state.
                existing.optimizer.set_state(0, Vec::new());
            }
            return CompiledModel::from_parts(model, existing);
        }
    }
    let mut opt = match (optimizer, saved.map(|c| c.optimizer)) {
        (Some(name), _) => Optimizer::from_name(name)?,
        (None, Some(existing)) => existing,
        (None, None) => Optimizer::adam(1e-3),
    };
    if refreeze {
        opt.set_state(0, Vec::new());
    }
    if let Some(lr) = learning_rate {
        opt.set_learning_rate(lr);
    }
    let loss = LossFn::from_name(loss.unwrap_or("sparse_categorical_crossentropy"))?;
    model.compile(opt, vec![Box::new(loss)], &["accuracy"])
}

/// `flip,translate=3` → the augmentation it names.
fn parse_augment(spec: Option<&str>) -> Result<Augmentation, Error> {
    let mut augment = Augmentation::default();
    for part in spec
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match part.split_once('=') {
            None if part == "flip" => augment.flip = true,
            None if part == "translate" || part == "crop" => augment.translate = 2,
            // Random crop with padding: pad by N, crop back to size — a shift of up to N.
            Some(("translate" | "crop", n)) => {
                augment.translate = n.parse().map_err(|_| {
                    Error::invalid(
                        "--augment",
                        format!("--augment: translate={n} is not a number of pixels"),
                    )
                })?
            }
            _ => {
                return Err(Error::invalid(
                    "--augment",
                    format!(
                        "--augment: unknown '{part}' (known: flip, translate, translate=N, crop=N)"
                    ),
                ))
            }
        }
    }
    Ok(augment)
}

pub fn train(args: TrainArgs) -> Result<(), Error> {
    let comm = communicator(&args)?;
    match &comm {
        Some(comm) if comm.size() > 1 => {
            if args.backup.is_some() {
                return Err(Error::invalid(
                    "--backup",
                    "a distributed run does not back up its state yet: run it without --backup",
                ));
            }
            let rank = comm.rank();
            // An error on one rank ends every rank: the others would wait for it in
            // the next allreduce forever.
            train_ranks(args, Some(comm.clone())).or_else(|e| {
                // One write, then a moment: mpirun's proxy forwards what the pipe holds
                // when it reads it, and tears the job down as soon as it hears of the
                // abort, so a message written piecemeal (as eprintln! does) or just
                // before the abort can reach the user cut short.
                let line = format!("convnet: rank {rank}: {e}\n");
                let _ = std::io::stderr().write_all(line.as_bytes());
                std::thread::sleep(std::time::Duration::from_millis(200));
                comm.abort(1)
            })
        }
        _ => train_ranks(args, None),
    }
}

fn train_ranks(args: TrainArgs, comm: Option<Arc<dyn Communicator>>) -> Result<(), Error> {
    // Only rank 0 speaks and writes files.
    let lead = comm.as_ref().is_none_or(|c| c.rank() == 0);
    macro_rules! say {
        ($($arg:tt)*) => { if lead { println!($($arg)*) } };
    }
    // Fail on an unwritable destination before spending the training time.
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(Error::file(
                &args.output,
                format!("cannot write: the folder {} does not exist", dir.display()),
            ));
        }
    }
    set_random_seed(args.seed);
    let (mut model, saved) = super::models::resolve_with_compile(&args.model)?;
    let data = data::load(&args.data, args.labels.as_deref(), &model.input_shapes()[0])?;
    say!("Data: {}", data.description);
    if let Some(names) = &data.class_names {
        // Kept in the saved model, for `convnet predict --image`, when they name its
        // output's classes one for one.
        if let Err(e) = model.set_class_names(names.clone()) {
            eprintln!("note: the class folders' names are not kept in the model ({e})");
        }
    }
    if args.adapt {
        let names = model.adapt_input_normalization(&data.x_train)?;
        say!(
            "Adapted {} to the {} training samples",
            names.join(", "),
            data.x_train.batch_len()
        );
    }
    for (patterns, trainable, what) in [
        (&args.freeze, false, "Froze"),
        (&args.unfreeze, true, "Unfroze"),
    ] {
        for pattern in patterns {
            let names = model.set_trainable_matching(pattern, trainable)?;
            say!("{what} {}", names.join(", "));
        }
    }
    let mut model = compile(
        (model, saved),
        args.optimizer.as_deref(),
        args.learning_rate,
        args.loss.as_deref(),
        !(args.freeze.is_empty() && args.unfreeze.is_empty()),
    )?;
    if args.verbose > 0 && lead {
        model.summary();
    }
    let mut callbacks: Vec<Box<dyn Callback>> = Vec::new();
    // The backup first: it restores the run's state before the loggers start.
    let backup = args.backup.as_ref().map(|dir| {
        BackupAndRestore::new(dir)
            .save_freq(args.backup_every.map_or(SaveFreq::Epoch, SaveFreq::Steps))
    });
    let backup_path = backup.as_ref().map(BackupAndRestore::path);
    let resuming = backup_path.as_ref().is_some_and(|p| p.exists());
    if let Some(path) = backup_path.as_ref().filter(|_| resuming) {
        println!("Resuming from the backup {}", path.display());
    }
    callbacks.extend(backup.map(|b| Box::new(b) as Box<dyn Callback>));
    if let Some(csv) = &args.csv {
        // A resumed run goes on with the log of the run that stopped.
        callbacks.push(Box::new(CSVLogger::new(csv).append(resuming)));
    }
    if let Some(dir) = &args.tensorboard {
        callbacks.push(Box::new(TensorBoard::new(dir).histogram_freq(1)));
    }
    // A distributed run leaves Ctrl-C to mpirun, which ends every rank: a rank
    // stopping on its own at a step boundary would leave the others waiting.
    let interrupts = Interrupts::install()?;
    if comm.is_none() {
        callbacks.push(Box::new(interrupts.clone()));
    }
    let augment = parse_augment(args.augment.as_deref())?;
    let options = FitOptions {
        batch_size: args.batch_size,
        epochs: args.epochs,
        verbose: args.verbose,
        validation_split: args.validation_split,
        shuffle: !args.no_shuffle,
        seed: Some(args.seed),
        callbacks,
        augment,
        communicator: comm.clone(),
        sync_batch_norm: args.sync_batch_norm,
        ..FitOptions::default()
    };
    let history = match model.fit(&[data.x_train], &[data.y_train], options) {
        Err(Error::Interrupted { epoch, steps }) => {
            let kept = match backup_path {
                Some(path) => format!(
                    "the training state is in {}; the same command resumes it",
                    path.display()
                ),
                None => {
                    model.save(&args.output)?;
                    format!(
                        "saved the model as trained so far to {}",
                        args.output.display()
                    )
                }
            };
            // After the progress bar's unfinished line.
            let newline = if args.verbose == 1 { "\n" } else { "" };
            println!("{newline}Interrupted in epoch {epoch} after {steps} steps: {kept}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
            std::process::exit(interrupts.exit_code().unwrap_or(130));
        }
        other => other?,
    };
    if !lead {
        return Ok(());
    }
    if let Some(plot) = &args.plot {
        history.plot(plot)?;
        println!("Drew the training curves in {}", plot.display());
    }
    if let Some((x, y)) = data.test {
        let scores = model.evaluate(&[x], &[y], 256)?;
        let metrics: Vec<String> = scores
            .iter()
            .map(|(k, v)| format!("test {k}: {v:.4}"))
            .collect();
        println!("{}", metrics.join(" - "));
    }
    model.save(&args.output)?;
    println!("Saved the trained model to {}", args.output.display());
    Ok(())
}

#[derive(clap::Args)]
pub struct EvaluateArgs {
    /// A model file (.keras, .h5, config.json, .onnx).
    model: String,
    /// fashion-mnist, fashion-mnist-sample, mnist, a folder of IDX files or of class
    /// folders of images, an .npz file, or X.npy (with --labels).
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    #[arg(long)]
    labels: Option<PathBuf>,
    /// The loss, when the model file has no compile configuration.
    #[arg(long)]
    loss: Option<String>,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
}

pub fn evaluate(args: EvaluateArgs) -> Result<(), Error> {
    let (model, saved) = super::models::resolve_with_compile(&args.model)?;
    let data = data::load(&args.data, args.labels.as_deref(), &model.input_shapes()[0])?;
    let mut model = compile((model, saved), None, None, args.loss.as_deref(), false)?;
    // A named dataset is evaluated on its test split; .npy data as given.
    let (x, y) = data.test.unwrap_or((data.x_train, data.y_train));
    let scores = model.evaluate(&[x], &[y], args.batch_size.max(1))?;
    let metrics: Vec<String> = scores.iter().map(|(k, v)| format!("{k}: {v:.4}")).collect();
    println!("{}", metrics.join(" - "));
    Ok(())
}
