//! Progress display for long CLI operations: an indicatif bar on a terminal, plain periodic
//! lines on stderr when forced (`--progress` / `IPM_PROGRESS=1`) without one, nothing otherwise.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How progress is shown.
pub enum Progress {
    Bar(ProgressBar),
    Lines {
        label: String,
        start: Instant,
        last: Instant,
        pos: u64,
        len: u64,
    },
    Hidden,
}

impl Progress {
    /// A progress display for `label` counting `unit`s. `json` hides it; `force` shows it even
    /// when stdout is not a terminal.
    pub fn new(label: &str, unit: &str, json: bool, force: bool) -> Progress {
        let force = force || std::env::var("IPM_PROGRESS").is_ok_and(|v| v == "1");
        if json && !force {
            return Progress::Hidden;
        }
        if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let template = format!(
                "{{spinner}} {label:<8} [{{bar:30.cyan/blue}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, ETA {{eta}})"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            Progress::Bar(bar)
        } else if force {
            let now = Instant::now();
            Progress::Lines {
                label: format!("{label} ({unit})"),
                start: now,
                last: now - Duration::from_secs(10),
                pos: 0,
                len: 0,
            }
        } else {
            Progress::Hidden
        }
    }

    /// Updates position and length.
    pub fn set(&mut self, pos: u64, len: u64) {
        match self {
            Progress::Bar(b) => {
                b.set_length(len.max(pos));
                b.set_position(pos);
            }
            Progress::Lines {
                label,
                start,
                last,
                pos: p,
                len: l,
            } => {
                *p = pos;
                *l = len.max(pos);
                if last.elapsed() >= Duration::from_millis(500) {
                    *last = Instant::now();
                    eprintln!("{}", line(label, *start, pos, *l));
                }
            }
            Progress::Hidden => {}
        }
    }

    /// Ends the display.
    pub fn finish(&mut self) {
        match self {
            Progress::Bar(b) => b.finish_and_clear(),
            Progress::Lines {
                label,
                start,
                pos,
                len,
                ..
            } => eprintln!("{}", line(label, *start, *pos, *len)),
            Progress::Hidden => {}
        }
    }
}

fn line(label: &str, start: Instant, pos: u64, len: u64) -> String {
    let secs = start.elapsed().as_secs_f64().max(0.001);
    let rate = pos as f64 / secs;
    let eta = if rate > 0.0 && len > pos {
        format!("{:.0}s", (len - pos) as f64 / rate)
    } else {
        "0s".into()
    };
    format!("progress: {label} {pos}/{len} ({rate:.0}/s, ETA {eta})")
}
