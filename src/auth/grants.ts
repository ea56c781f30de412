/**
 * Grants from the token's `scope` claim (space-separated, OAuth 2.0 style): `ACTION` or `ACTION:FEEDGLOB`, where
 * ACTION is read, publish, subscribe or admin, and FEEDGLOB a feed name in which `*` stands for any run of
 * characters. `admin` implies the other three. Scopes that are not grants (`openid`, ...) are ignored.
 */

export const ACTIONS = ["read", "publish", "subscribe", "admin"] as const;
export type Action = (typeof ACTIONS)[number];

export interface Grant {
  action: Action;
  /** Matches the feeds this grant covers; undefined covers every feed. */
  feeds: RegExp | undefined;
  /** As written in the scope, for messages. */
  text: string;
}

const GRANT = /^(read|publish|subscribe|admin)(?::([a-z0-9*][a-z0-9._*-]{0,62}))?$/;

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.]/g, "\\.").replace(/\*/g, "[a-z0-9._-]*");
  return new RegExp(`^${escaped}$`);
}

export function parseScope(scope: unknown): Grant[] {
  if (typeof scope !== "string") return [];
  const grants: Grant[] = [];
  for (const text of scope.split(" ")) {
    const match = GRANT.exec(text);
    if (!match) continue;
    const glob = match[2];
    grants.push({
      action: match[1] as Action,
      // `*` alone covers every feed, as no glob does.
      feeds: glob === undefined || glob === "*" ? undefined : globToRegExp(glob),
      text,
    });
  }
  return grants;
}

/** Whether the grants allow `action` on `feed`, or (without a feed) on some feed at least. */
export function allows(grants: readonly Grant[], action: Action, feed?: string): boolean {
  return grants.some(
    (grant) =>
      (grant.action === action || grant.action === "admin") &&
      (feed === undefined || grant.feeds === undefined || grant.feeds.test(feed)),
  );
}

/** Whether the grants allow `action` on every feed, those not yet created included. */
export function allowsEveryFeed(grants: readonly Grant[], action: Action): boolean {
  return grants.some(
    (grant) => (grant.action === action || grant.action === "admin") && grant.feeds === undefined,
  );
}
