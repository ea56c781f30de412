import type { Queryable } from "./database.js";

/** Installation-wide settings: name → value, written once. */

/**
 * The stored value of `name`; when there is none yet, stores `value` and returns it. Two nodes doing this at once
 * both get the value that was stored first.
 */
export async function settleSetting(
  db: Queryable,
  name: string,
  value: string,
  now: number,
): Promise<string> {
  await db("settings").insert({ name, value, created_at: now }).onConflict("name").ignore();
  const row: { value: string } | undefined = await db("settings").select("value").where({ name }).first();
  if (!row) throw new Error(`setting ${name} vanished`);
  return row.value;
}
