import type { Queryable, Storage } from "../db/database.js";
import { bumpTypesVersion, type FeedRow, findFeed, lockFeed } from "../db/feeds.js";
import {
  type DeclaredTypeRow,
  declaredType,
  declaredTypes,
  deleteDeclaredType,
  type TypeStatsRow,
  typeStats,
  typeStatsOf,
  upsertDeclaredType,
} from "../db/types.js";
import { HttpProblem, type Pointed } from "../errors.js";
import type { PreparedEvent } from "../events/encoding.js";
import { compileSchema, type DataValidator, mismatches } from "../events/schema.js";
import { type Findings, isJsonMediaType, REVERSE_DNS } from "../events/validate.js";
import { feedNotFound } from "./feeds.js";
import type { WakeupBus } from "./wakeup.js";

/**
 * Event types: the catalogue a feed declares (description, JSON Schema of `data`, example, deprecation), what
 * the feed holds of each type, and the rules an append applies from them.
 */

/** The longest type name the catalogue takes: the longest a `type` filter takes too. */
export const MAX_TYPE_LENGTH = 256;

export function checkTypeName(type: string): void {
  if (type.length > MAX_TYPE_LENGTH || !REVERSE_DNS.test(type)) {
    throw new HttpProblem(
      400,
      "invalidTypeName",
      `An event type is in reverse-DNS form, e.g. nl.kadaster.brk.perceel-overgedragen, of at most ${MAX_TYPE_LENGTH} characters.`,
    );
  }
}

export function typeNotFound(feed: string, type: string): HttpProblem {
  return new HttpProblem(
    404,
    "typeNotFound",
    `The feed "${feed}" neither declares the type "${type}" nor holds events of it.`,
  );
}

/** What a declaration says, with schema and example as JSON values (undefined: none). */
export interface Declaration {
  description: string | null;
  schema: unknown;
  example: unknown;
  deprecated: boolean;
}

/** A type of a feed as the API shows it: its declaration (if any) beside the feed's figures for it. */
export interface TypeEntry {
  type: string;
  declared: DeclaredTypeRow | undefined;
  stats: TypeStatsRow | undefined;
}

function entries(declared: DeclaredTypeRow[], stats: TypeStatsRow[]): TypeEntry[] {
  const byType = new Map<string, TypeEntry>();
  for (const row of declared) byType.set(row.type, { type: row.type, declared: row, stats: undefined });
  for (const row of stats) {
    const entry = byType.get(row.type);
    if (entry) entry.stats = row;
    else byType.set(row.type, { type: row.type, declared: undefined, stats: row });
  }
  return [...byType.values()].sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
}

const toText = (value: unknown) => (value === undefined ? null : JSON.stringify(value));

/** The event types of one storage, as the HTTP layer uses them. */
export class EventTypes {
  constructor(private readonly storage: Storage) {}

  private async feedOf(db: Queryable, name: string, lock: boolean): Promise<FeedRow> {
    const feed = lock ? await lockFeed(db, name) : await findFeed(db, name);
    if (!feed) throw feedNotFound(name);
    return feed;
  }

  async list(feed: string): Promise<TypeEntry[]> {
    const row = await this.feedOf(this.storage.reader, feed, false);
    const [declared, stats] = await Promise.all([
      declaredTypes(this.storage.reader, row.id),
      typeStats(this.storage.reader, row.id),
    ]);
    return entries(declared, stats);
  }

  /** The type, or a 404 when the feed neither declares it nor holds events of it. */
  async get(feed: string, type: string): Promise<TypeEntry> {
    const row = await this.feedOf(this.storage.reader, feed, false);
    const [declared, stats] = await Promise.all([
      declaredType(this.storage.reader, row.id, type),
      typeStatsOf(this.storage.reader, row.id, type),
    ]);
    if (!declared && !stats) throw typeNotFound(feed, type);
    return { type, declared, stats };
  }

  /**
   * Declares the type or replaces its declaration, and marks the feed's types changed in the same transaction:
   * the next append to the feed, on any node, applies it.
   */
  put(feed: string, type: string, declaration: Declaration): Promise<{ entry: TypeEntry; created: boolean }> {
    return this.storage.writer.transaction(async (trx) => {
      const row = await this.feedOf(trx, feed, true);
      const now = Date.now();
      const created = await upsertDeclaredType(
        trx,
        row.id,
        {
          type,
          description: declaration.description,
          schema: toText(declaration.schema),
          example: toText(declaration.example),
          deprecated: declaration.deprecated,
        },
        now,
      );
      await bumpTypesVersion(trx, row.id);
      const declared = await declaredType(trx, row.id, type);
      return { entry: { type, declared, stats: await typeStatsOf(trx, row.id, type) }, created };
    });
  }

  /** Removes the declaration; the feed's events of the type stay. A 404 when the type is not declared. */
  async delete(feed: string, type: string): Promise<void> {
    await this.storage.writer.transaction(async (trx) => {
      const row = await this.feedOf(trx, feed, true);
      if (!(await deleteDeclaredType(trx, row.id, type))) {
        throw new HttpProblem(404, "typeNotFound", `The feed "${feed}" does not declare the type "${type}".`);
      }
      await bumpTypesVersion(trx, row.id);
    });
  }
}

/** Checks one event of a request against its feed's types; `prefix` is the event's pointer (`/3` in a batch). */
export type TypeCheck = (event: PreparedEvent, prefix: string) => Findings;

/** What an append checks of an event of one declared type. */
interface TypeRule {
  deprecated: boolean;
  /** The compiled schema, when the type has one. */
  validate: DataValidator | undefined;
  /** Why events of this type are refused: a stored schema this version cannot compile. */
  broken: string | undefined;
  /** The schema's JSON text, so an unchanged schema is not compiled again when the catalogue reloads. */
  schemaText: string | null;
}

interface Catalogue {
  version: number;
  rules: Map<string, TypeRule>;
}

/** Feeds whose compiled catalogue a process keeps; the least recently used is forgotten first. */
const CACHED_FEEDS = 1_000;

/**
 * The declared types of each feed, compiled, for the append path. A feed's entry is current while the feed row's
 * `types_version` is unchanged (a change of the feed's types or type policy moves it); the appender's write checks
 * it under the feed's lock, so a change committed by any node applies to the next append. Compiling happens on the first append after a change, never per request.
 */
export class TypeRules {
  private readonly cache = new Map<number, Catalogue>();

  constructor(bus: WakeupBus) {
    bus.listen({ appended: () => {}, removed: (feedId) => this.cache.delete(feedId) });
  }

  private async catalogue(db: Queryable, feed: FeedRow): Promise<Catalogue> {
    const cached = this.cache.get(feed.id);
    if (cached?.version === feed.typesVersion) {
      this.cache.delete(feed.id);
      this.cache.set(feed.id, cached);
      return cached;
    }
    const rules = new Map<string, TypeRule>();
    for (const row of await declaredTypes(db, feed.id)) {
      const previous = cached?.rules.get(row.type);
      rules.set(
        row.type,
        previous && previous.schemaText === row.schema
          ? { ...previous, deprecated: row.deprecated }
          : compileRule(row),
      );
    }
    const catalogue = { version: feed.typesVersion, rules };
    this.cache.delete(feed.id);
    this.cache.set(feed.id, catalogue);
    if (this.cache.size > CACHED_FEEDS) this.cache.delete(this.cache.keys().next().value!);
    return catalogue;
  }

  /**
   * Checks a request's fresh events against the feed's types and policy: errors (400) point into the structured
   * form (`/type`, `/data/perceel/nummer`, `/3/data/...` in a batch), warnings name deprecated types.
   */
  async checker(db: Queryable, feed: FeedRow): Promise<TypeCheck> {
    const { rules } = await this.catalogue(db, feed);
    if (rules.size === 0 && feed.typePolicy === "open") return () => NONE;
    return (event, prefix) => {
      const rule = rules.get(event.type);
      if (!rule) {
        if (feed.typePolicy === "open") return NONE;
        return {
          errors: [
            {
              pointer: `${prefix}/type`,
              detail: "is not a declared type of this feed, whose typePolicy is declared",
            },
          ],
          warnings: [],
        };
      }
      const warnings = rule.deprecated
        ? [{ pointer: `${prefix}/type`, detail: "is a deprecated type of this feed" }]
        : [];
      return { errors: dataErrors(rule, event.attributes, prefix), warnings };
    };
  }
}

const NONE: Findings = { errors: [], warnings: [] };

function compileRule(row: DeclaredTypeRow): TypeRule {
  const rule: TypeRule = {
    deprecated: row.deprecated,
    validate: undefined,
    broken: undefined,
    schemaText: row.schema,
  };
  if (row.schema === null) return rule;
  try {
    rule.validate = compileSchema(JSON.parse(row.schema));
  } catch (error) {
    rule.broken = (error as Error).message;
  }
  return rule;
}

/** Where an event's data does not meet its type's schema. Absent data is null; data must be JSON. */
function dataErrors(rule: TypeRule, attributes: Record<string, unknown>, prefix: string): Pointed[] {
  if (rule.broken !== undefined) {
    return [
      {
        pointer: `${prefix}/type`,
        detail: `has a schema that does not compile here (${rule.broken}); ask the feed's admin`,
      },
    ];
  }
  if (!rule.validate) return [];
  if (attributes.data_base64 !== undefined) {
    return [{ pointer: `${prefix}/data_base64`, detail: "the type has a schema, so its data must be JSON" }];
  }
  const contentType = attributes.datacontenttype;
  if (typeof contentType === "string" && !isJsonMediaType(contentType)) {
    return [
      { pointer: `${prefix}/datacontenttype`, detail: "the type has a schema, so its data must be JSON" },
    ];
  }
  return mismatches(rule.validate, attributes.data ?? null, `${prefix}/data`);
}
