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

/** The range of ECMAScript dates: 8.64e15 ms (about 273,790 years) either side of 1970. */
const DATE_RANGE_MS = 8.64e15;

/**
 * The instant `duration` before `now`, in epoch milliseconds, or undefined when it lies outside the range of
 * dates. (Date arithmetic out of range gives NaN, and a NaN cut-off compares false with every time: retention
 * once read that as "every event is older" and removed a whole feed.)
 */
export function subtractDuration(now: number, duration: Duration): number | undefined {
  const date = new Date(now);
  date.setUTCFullYear(date.getUTCFullYear() - duration.years, date.getUTCMonth() - duration.months);
  date.setUTCDate(date.getUTCDate() - duration.weeks * 7 - duration.days);
  const clock = ((duration.hours * 60 + duration.minutes) * 60 + duration.seconds) * 1000;
  const instant = date.getTime() - clock;
  return Number.isFinite(instant) && Math.abs(instant) <= DATE_RANGE_MS ? instant : undefined;
}

/**
 * Whether a duration can be applied: subtracting it from `now` stays in the range of dates, so it stays so at
 * every later time. Configuration and feed settings refuse a duration that cannot; they never store one.
 */
export function isApplicable(duration: Duration, now = Date.now()): boolean {
  return subtractDuration(now, duration) !== undefined;
}

/** What is wrong with a duration's text, for a problem document or a configuration error; undefined if nothing. */
export function durationProblem(text: string, now = Date.now()): string | undefined {
  const duration = parseDuration(text);
  if (!duration || Object.values(duration).every((part) => part === 0)) {
    return "must be a non-zero ISO 8601 duration, e.g. P30D or PT12H";
  }
  if (!isApplicable(duration, now)) {
    return "is too long: subtracted from now it leaves the range of dates (about 270,000 years)";
  }
  return undefined;
}
