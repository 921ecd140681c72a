//! `connrun schedule`: prints what runs `connrun weekly` on the team's schedule, for systemd or cron.
//!
//! It only prints (the operator installs it), with absolute paths for the binary, the working folder, the
//! targets file and the artifacts, so the job does not depend on the shell it was written from. Times are
//! the team's: Asia/Tokyo, whatever zone the host runs in (systemd's `OnCalendar` takes the zone; cron uses
//! `CRON_TZ`).

use std::path::{Path, PathBuf};

use crate::cli::args::{GlobalArgs, ScheduleArgs};
use crate::cli::error::{CliError, Verdict};
use crate::cli::output::{absolute, emit};

/// The zone the team's schedule is written in.
pub const SCHEDULE_ZONE: &str = "Asia/Tokyo";

/// Weekday names systemd and cron both accept, with cron's number.
const WEEKDAYS: [(&str, u8); 7] = [("Sun", 0), ("Mon", 1), ("Tue", 2), ("Wed", 3), ("Thu", 4), ("Fri", 5), ("Sat", 6)];

/// `--at "Mon 09:00"` → (weekday name, cron weekday number, hour, minute).
fn parse_at(at: &str) -> Result<(&'static str, u8, u8, u8), CliError> {
    let usage = || CliError::Usage(format!("--at `{at}`: give a weekday and a time, e.g. \"Mon 09:00\""));
    let (day, time) = at.trim().split_once(' ').ok_or_else(usage)?;
    let (name, number) = WEEKDAYS.iter().find(|(n, _)| n.eq_ignore_ascii_case(day.trim())).ok_or_else(usage)?;
    let (hour, minute) = time.trim().split_once(':').ok_or_else(usage)?;
    let hour: u8 = hour.parse().ok().filter(|h| *h < 24).ok_or_else(usage)?;
    let minute: u8 = minute.parse().ok().filter(|m| *m < 60).ok_or_else(usage)?;
    Ok((name, *number, hour, minute))
}

/// Quotes a word for a shell or a systemd command line (single quotes; a quote inside is refused).
fn quoted(path: &Path) -> Result<String, CliError> {
    let text = path.display().to_string();
    if text.contains(['\'', '\n', '%']) {
        return Err(CliError::Usage(format!("{text}: a path with a quote, newline or % cannot be scheduled")));
    }
    Ok(format!("'{text}'"))
}

/// The `connrun … weekly …` command line, with absolute paths.
fn command_line(global: &GlobalArgs, args: &ScheduleArgs) -> Result<String, CliError> {
    let exe = std::env::current_exe()?;
    let mut line = format!(
        "{} --artifacts {} --targets {} --run-templates {}",
        quoted(&exe)?,
        quoted(&absolute(&global.artifacts))?,
        quoted(&absolute(&global.targets))?,
        quoted(&absolute(&global.run_templates))?,
    );
    if let Some(dir) = &global.templates_dir {
        line.push_str(&format!(" --templates-dir {}", quoted(&absolute(dir))?));
    }
    line.push_str(&format!(" weekly --target {} --template {}", word(&args.target)?, word(&args.template)?));
    if let Some(log) = &args.log {
        line.push_str(&format!(" --log {}", quoted(&absolute(log))?));
    }
    Ok(line)
}

/// A target or template name, which must be a plain word to go on a command line unquoted.
fn word(name: &str) -> Result<&str, CliError> {
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if plain {
        Ok(name)
    } else {
        Err(CliError::Usage(format!("`{name}` is not a plain name (letters, digits, - _ .)")))
    }
}

/// Prints the unit and timer, or the crontab entry.
pub fn print(global: &GlobalArgs, args: &ScheduleArgs) -> Result<Verdict, CliError> {
    let (day, cron_day, hour, minute) = parse_at(&args.at)?;
    let command = command_line(global, args)?;
    let workdir: PathBuf = absolute(Path::new("."));
    let text = if args.systemd {
        format!(
            "# /etc/systemd/system/connrun-weekly.service\n[Unit]\nDescription=connrun weekly connectivity run ({template} / {target})\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nWorkingDirectory={workdir}\nExecStart={command}\n\n# /etc/systemd/system/connrun-weekly.timer\n[Unit]\nDescription=connrun weekly, {day} {hour:02}:{minute:02} {SCHEDULE_ZONE}\n\n[Timer]\nOnCalendar={day} *-*-* {hour:02}:{minute:02}:00 {SCHEDULE_ZONE}\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n",
            template = args.template,
            target = args.target,
            workdir = workdir.display(),
        )
    } else {
        format!(
            "# connrun weekly, {day} {hour:02}:{minute:02} {SCHEDULE_ZONE} (crontab -e)\nCRON_TZ={SCHEDULE_ZONE}\n{minute} {hour} * * {cron_day} cd {} && {command}\n",
            quoted(&workdir)?
        )
    };
    emit(global, &serde_json::json!({ "text": text }), &text)?;
    Ok(Verdict::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_is_a_weekday_and_a_clock_time() {
        assert_eq!(parse_at("Mon 09:00").ok(), Some(("Mon", 1, 9, 0)));
        assert_eq!(parse_at("fri 17:30").ok(), Some(("Fri", 5, 17, 30)));
        for bad in ["Monday 09:00", "Mon 24:00", "Mon 9", "09:00", ""] {
            assert!(parse_at(bad).is_err(), "{bad}");
        }
    }
}
