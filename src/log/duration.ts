/**
 * ISO 8601 durations (`P30D`, `PT12H`, `P1Y2M`), as feeds' `retention.maxAge` takes them. Years and months are
 * calendar units, so the cut-off is computed on the calendar rather than from a fixed number of seconds.
 */

export interface Duration {
  years: number;
  months: number;
  weeks: number;
  days: number;
  hours: number;
  minutes: number;
  seconds: number;
}

const PATTERN =
  /^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:[.,]\d+)?)S)?)?$/;

/** Parses a duration, or returns undefined when the text is not one. Fractions only on seconds. */
export function parseDuration(text: string): Duration | undefined {
  const match = PATTERN.exec(text);
  if (!match) return undefined;
  const [years, months, weeks, days, hours, minutes] = match.slice(1, 7).map((part) => Number(part ?? 0));
  const seconds = Number((match[7] ?? "0").replace(",", "."));
  const duration = {
    years: years!,
    months: months!,
    weeks: weeks!,
    days: days!,
    hours: hours!,
    minutes: minutes!,
    seconds,
  };
  return Object.values(duration).every(Number.isFinite) ? duration : undefined;
}

/** The instant `duration` before `now`, in epoch milliseconds. */
export function subtractDuration(now: number, duration: Duration): number {
  const date = new Date(now);
  date.setUTCFullYear(date.getUTCFullYear() - duration.years, date.getUTCMonth() - duration.months);
  date.setUTCDate(date.getUTCDate() - duration.weeks * 7 - duration.days);
  const clock = ((duration.hours * 60 + duration.minutes) * 60 + duration.seconds) * 1000;
  return date.getTime() - clock;
}
