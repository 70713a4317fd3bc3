//! Keras's `TensorBoard(log_dir, histogram_freq, update_freq)` callback: event files
//! that TensorBoard reads, as Keras lays them out. `log_dir/train` gets the epoch's
//! metrics as `epoch_<name>` scalars (and the learning rate), per batch `batch_<name>`
//! when asked, and every `histogram_freq` epochs a histogram of each weight
//! (`<layer>/<weight>/histogram`); `log_dir/validation` gets the `val_` metrics without
//! the prefix.
//!
//! An event file is a sequence of TFRecords: each record is its length (u64), the
//! masked CRC-32C of the length, the bytes of one `Event` protocol buffer, and their
//! masked CRC-32C. The first event names the file version; the rest carry summaries.
//! The messages are the fields of TensorFlow's `event.proto` and `summary.proto` that
//! these summaries use.

use super::callbacks::{Callback, Logs, TrainContext};
use crate::error::{Error, Result};
use prost::Message;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// TensorFlow's `Event`.
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The step (epoch or batch) the summary is for.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// `brain.Event:2` in a file's first event.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    /// The values logged.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// TensorFlow's `Summary`: tagged values.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// TensorFlow's `Summary.Value`: a scalar or a histogram under a tag.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    /// The name TensorBoard shows.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// A scalar.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    /// A histogram.
    #[prost(message, optional, tag = "5")]
    pub histo: Option<Histogram>,
}

/// TensorFlow's `HistogramProto`: counts in buckets, each bucket ending at its limit.
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    /// The smallest value.
    #[prost(double, tag = "1")]
    pub min: f64,
    /// The largest value.
    #[prost(double, tag = "2")]
    pub max: f64,
    /// How many values.
    #[prost(double, tag = "3")]
    pub num: f64,
    /// Their sum.
    #[prost(double, tag = "4")]
    pub sum: f64,
    /// The sum of their squares.
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    /// Each bucket's upper edge.
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    /// Each bucket's count.
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

impl Histogram {
    /// The histogram of `values` in `buckets` equal buckets between their extremes
    /// (one bucket when they are all equal).
    pub fn of(values: &[f32], buckets: usize) -> Histogram {
        let (mut min, mut max, mut sum, mut squares) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0);
        for &v in values {
            let v = f64::from(v);
            min = min.min(v);
            max = max.max(v);
            sum += v;
            squares += v * v;
        }
        if values.is_empty() {
            (min, max) = (0.0, 0.0);
        }
        let buckets = if max > min { buckets.max(1) } else { 1 };
        let width = (max - min) / buckets as f64;
        let mut counts = vec![0f64; buckets];
        for &v in values {
            let at = if width > 0.0 {
                (((f64::from(v) - min) / width) as usize).min(buckets - 1)
            } else {
                0
            };
            counts[at] += 1.0;
        }
        Histogram {
            min,
            max,
            num: values.len() as f64,
            sum,
            sum_squares: squares,
            bucket_limit: (1..=buckets).map(|i| min + width * i as f64).collect(),
            bucket: counts,
        }
    }
}

/// CRC-32C masked as TFRecord stores it.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One event file, written record by record.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir` and in it a new event file named as TensorFlow names them
    /// (`events.out.tfevents.<seconds>.<host>.<pid>.v2`), starting with the
    /// file-version event.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let now = wall_time();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}.v2",
            now as u64,
            std::process::id()
        ));
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut writer = EventWriter {
            path,
            out: BufWriter::new(file),
        };
        writer.write(&Event {
            wall_time: now,
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        })?;
        Ok(writer)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event as a TFRecord.
    pub fn write(&mut self, event: &Event) -> Result<()> {
        let data = event.encode_to_vec();
        let length = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&length);
        record.extend_from_slice(&masked_crc(&length).to_le_bytes());
        record.extend_from_slice(&data);
        record.extend_from_slice(&masked_crc(&data).to_le_bytes());
        self.out
            .write_all(&record)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Writes tagged values at `step`.
    pub fn summary(&mut self, step: usize, value: Vec<SummaryValue>) -> Result<()> {
        self.write(&Event {
            wall_time: wall_time(),
            step: step as i64,
            file_version: None,
            summary: Some(Summary { value }),
        })
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reads back the events of a file [`EventWriter`] wrote, checking every record's
/// length and CRCs; an error names the file and the record.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |at: usize, what: &str| Error::file(path, format!("record at byte {at}: {what}"));
    let mut events = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = bytes
            .get(at..at + 12)
            .ok_or_else(|| bad(at, "truncated header"))?;
        let (length, crc) = header.split_at(8);
        if masked_crc(length).to_le_bytes() != crc {
            return Err(bad(at, "the length's CRC does not match"));
        }
        let length = u64::from_le_bytes(length.try_into().expect("8 bytes"));
        let start = at + 12;
        let end = usize::try_from(length)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e + 4 <= bytes.len())
            .ok_or_else(|| bad(at, "the record runs past the end of the file"))?;
        let data = &bytes[start..end];
        if masked_crc(data).to_le_bytes() != bytes[end..end + 4] {
            return Err(bad(at, "the data's CRC does not match"));
        }
        events.push(Event::decode(data).map_err(|e| bad(at, &e.to_string()))?);
        at = end + 4;
    }
    Ok(events)
}

/// When TensorBoard logs metrics: Keras's `update_freq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateFreq {
    /// At the end of each epoch (Keras's default).
    Epoch,
    /// Also after each batch (`batch_<name>`, at the global batch step).
    Batch,
}

/// Keras's `keras.callbacks.TensorBoard(log_dir, histogram_freq=0, update_freq="epoch")`.
pub struct TensorBoard {
    log_dir: PathBuf,
    histogram_freq: usize,
    update_freq: UpdateFreq,
    writers: Option<(EventWriter, EventWriter)>,
    global_batch: usize,
}

impl TensorBoard {
    /// Logs under `log_dir` (its `train` and `validation` folders).
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        TensorBoard {
            log_dir: log_dir.into(),
            histogram_freq: 0,
            update_freq: UpdateFreq::Epoch,
            writers: None,
            global_batch: 0,
        }
    }

    /// Keras's `histogram_freq`: a histogram of every weight each `n` epochs (0: none).
    pub fn histogram_freq(mut self, n: usize) -> Self {
        self.histogram_freq = n;
        self
    }

    /// Keras's `update_freq`.
    pub fn update_freq(mut self, freq: UpdateFreq) -> Self {
        self.update_freq = freq;
        self
    }

    fn writers(&mut self) -> Result<&mut (EventWriter, EventWriter)> {
        if self.writers.is_none() {
            self.writers = Some((
                EventWriter::create(&self.log_dir.join("train"))?,
                EventWriter::create(&self.log_dir.join("validation"))?,
            ));
        }
        Ok(self.writers.as_mut().expect("made above"))
    }
}

fn scalar(tag: String, value: f64) -> SummaryValue {
    SummaryValue {
        tag,
        simple_value: Some(value as f32),
        histo: None,
    }
}

impl Callback for TensorBoard {
    fn writes_files(&self) -> bool {
        true
    }

    fn on_train_begin(&mut self, _: &mut TrainContext) -> Result<()> {
        self.writers()?;
        Ok(())
    }

    fn on_batch_end(&mut self, _: usize, logs: &Logs, _: &mut TrainContext) -> Result<()> {
        self.global_batch += 1;
        if self.update_freq == UpdateFreq::Batch {
            let step = self.global_batch;
            let values = logs
                .iter()
                .map(|(k, v)| scalar(format!("batch_{k}"), *v))
                .collect();
            self.writers()?.0.summary(step, values)?;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut TrainContext) -> Result<()> {
        let learning_rate = ctx.learning_rate();
        let mut train: Vec<SummaryValue> = logs
            .iter()
            .filter(|(k, _)| !k.starts_with("val_"))
            .map(|(k, v)| scalar(format!("epoch_{k}"), *v))
            .collect();
        train.push(scalar("epoch_learning_rate".into(), learning_rate));
        let validation: Vec<SummaryValue> = logs
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("val_")
                    .map(|k| scalar(format!("epoch_{k}"), *v))
            })
            .collect();
        let histograms: Vec<SummaryValue> =
            if self.histogram_freq > 0 && epoch.is_multiple_of(self.histogram_freq) {
                ctx.model
                    .layers()
                    .flat_map(|layer| {
                        layer.weights().into_iter().map(move |w| SummaryValue {
                            tag: format!("{}/{}/histogram", layer.name(), w.name),
                            simple_value: None,
                            histo: Some(Histogram::of(w.value.data(), 30)),
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
        let (train_writer, validation_writer) = self.writers()?;
        train_writer.summary(epoch, train)?;
        if !histograms.is_empty() {
            train_writer.summary(epoch, histograms)?;
        }
        if !validation.is_empty() {
            validation_writer.summary(epoch, validation)?;
        }
        train_writer.flush()?;
        validation_writer.flush()
    }

    fn on_train_end(&mut self, _: &mut TrainContext) -> Result<()> {
        if let Some((train, validation)) = &mut self.writers {
            train.flush()?;
            validation.flush()?;
        }
        Ok(())
    }
}
