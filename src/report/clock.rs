//! The operator's clock: one time zone for every time a person reads and for the date in a new RUN_ID.
//!
//! The team writes its logs in JST (`2025-11-19 09:30 JST`, one time per moment) and names runs by the
//! operator's date, but a run recorded at 00:30 JST is still "yesterday" in UTC. Every page and command
//! therefore asks a [`Zone`] (Asia/Tokyo unless `--tz` / `CONNRUN_TZ` says otherwise) instead of formatting
//! UTC or a fixed offset itself; the zone database is the maintained `chrono-tz` crate, so daylight saving
//! time in other zones is right too.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// The zone a person reads times in; `Asia/Tokyo` by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(
    /// The IANA zone.
    pub Tz,
);

impl Default for Zone {
    fn default() -> Self {
        Zone(chrono_tz::Asia::Tokyo)
    }
}

impl FromStr for Zone {
    type Err = String;

    fn from_str(text: &str) -> Result<Zone, String> {
        text.parse::<Tz>()
            .map(Zone)
            .map_err(|_| format!("`{text}` is not an IANA time zone name, e.g. Asia/Tokyo or UTC"))
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl Zone {
    /// `2025-11-19 09:30 JST`: the one way a moment is written on every page.
    pub fn moment(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.0).format("%Y-%m-%d %H:%M %Z").to_string()
    }

    /// `2025-11-19`: the operator's date of a moment.
    pub fn date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.0).date_naive()
    }

    /// `09:30 JST`: the time of day of a moment, for entries already headed by their date.
    pub fn time(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.0).format("%H:%M %Z").to_string()
    }

    /// Today in this zone: the date of a new label-form RUN_ID.
    pub fn today(&self) -> NaiveDate {
        self.date(Utc::now())
    }

    /// The deadline of a next action: 10:00 on the first working day (Monday to Friday) after `at`'s date.
    /// Public holidays are not known; a team that needs them writes the deadline by hand.
    pub fn next_business_morning(&self, at: DateTime<Utc>) -> String {
        let mut day = self.date(at);
        loop {
            day = day.checked_add_days(Days::new(1)).unwrap_or(day);
            if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                break;
            }
        }
        let ten = day.and_hms_opt(10, 0, 0).unwrap_or_default();
        // A gap (daylight saving) at 10:00 does not happen in practice; fall back to the local reading.
        match self.0.from_local_datetime(&ten).earliest() {
            Some(local) => local.format("%Y-%m-%d %H:%M %Z").to_string(),
            None => format!("{} {}", ten.format("%Y-%m-%d %H:%M"), self.0.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn a_moment_is_written_once_in_jst_by_default() {
        let zone = Zone::default();
        assert_eq!(zone.moment(utc("2025-11-19T00:30:00Z")), "2025-11-19 09:30 JST");
        assert_eq!(zone.time(utc("2025-11-19T00:30:00Z")), "09:30 JST");
    }

    #[test]
    fn the_operators_date_is_not_the_utc_date() {
        let at = utc("2025-11-18T15:30:00Z");
        assert_eq!(Zone::default().date(at).to_string(), "2025-11-19");
        assert_eq!("UTC".parse::<Zone>().expect("zone").date(at).to_string(), "2025-11-18");
    }

    #[test]
    fn unknown_zones_are_refused_with_an_example() {
        let error = "Asia/Tokio".parse::<Zone>().expect_err("refused");
        assert!(error.contains("Asia/Tokyo"), "{error}");
    }

    #[test]
    fn the_deadline_is_the_next_working_morning() {
        let zone = Zone::default();
        // Wednesday evening JST → Thursday; Friday → Monday.
        assert_eq!(zone.next_business_morning(utc("2025-11-19T10:00:00Z")), "2025-11-20 10:00 JST");
        assert_eq!(zone.next_business_morning(utc("2025-11-21T01:00:00Z")), "2025-11-24 10:00 JST");
        let berlin: Zone = "Europe/Berlin".parse().expect("zone");
        assert_eq!(berlin.next_business_morning(utc("2025-07-01T12:00:00Z")), "2025-07-02 10:00 CEST");
    }
}
