import { promises as dns, type LookupAddress, type LookupOptions, lookup } from "node:dns";
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";

/**
 * The address guard: where callbacks may point. Only globally routable unicast addresses are allowed, unless the
 * configured allow-list names an address or range. Loopback, private (RFC 1918, unique-local), link-local
 * (which holds cloud metadata services), multicast, unspecified, carrier-grade NAT, reserved and documentation
 * ranges are refused, in IPv4 and IPv6. An IPv4-mapped or IPv4-compatible IPv6 address is judged by its IPv4
 * form, and the IPv6
 * ranges that embed an IPv4 address (6to4, Teredo, NAT64) are refused outright: their IPv4 part could be anything.
 *
 * The guard is consulted twice: at registration on every address the host resolves to, and at every delivery on
 * the addresses the connection may use (see `lookup`) and on the address the socket actually connected to.
 */

type Address = ipaddr.IPv4 | ipaddr.IPv6;

export class AddressRefused extends Error {
  readonly code = "EADDRREFUSED";
  constructor(readonly address: string) {
    super(`${address} is an internal address that callbacks may not reach (see SEINTJE_CALLBACK_ALLOW)`);
    this.name = "AddressRefused";
  }
}

/**
 * An IPv6 address that embeds an IPv4 address in its last 32 bits and reaches it becomes its IPv4 form: the
 * IPv4-mapped `::ffff:a.b.c.d` and the deprecated IPv4-compatible `::a.b.c.d` (RFC 4291 §2.5.5.1; `[::127.0.0.1]`,
 * which URL parsers write as `[::7f00:1]`, reaches 127.0.0.1 on many systems). `::` and `::1` are themselves.
 * Everything else stays as it is.
 */
function normalized(address: Address): Address {
  if (!(address instanceof ipaddr.IPv6)) return address;
  if (address.isIPv4MappedAddress()) return address.toIPv4Address();
  const parts = address.parts;
  const compatible = parts.slice(0, 6).every((part) => part === 0) && (parts[6] !== 0 || parts[7]! > 1);
  return compatible ? ipaddr.fromByteArray(address.toByteArray().slice(12)) : address;
}

/** Parses one allow-list entry: an address or a CIDR range. Throws with a readable message. */
export function parseAllowEntry(entry: string): [Address, number] {
  const text = entry.replace(/^\[(.*)\]$/, "$1");
  if (text.includes("/")) {
    const [address, bits] = ipaddr.parseCIDR(text);
    if (address instanceof ipaddr.IPv6 && address.isIPv4MappedAddress() && bits >= 96) {
      return [address.toIPv4Address(), bits - 96];
    }
    return [address, bits];
  }
  if (!ipaddr.isValid(text)) throw new Error(`"${entry}" is not an IP address or CIDR range`);
  const address = normalized(ipaddr.parse(text));
  return [address, address.kind() === "ipv4" ? 32 : 128];
}

export class AddressGuard {
  private readonly allowed: Array<[Address, number]>;

  constructor(allowList: readonly string[] = []) {
    this.allowed = allowList.map(parseAllowEntry);
  }

  /** Whether a callback may reach this IP address (IPv4 or IPv6 text, brackets allowed). */
  allows(text: string): boolean {
    const bare = text.replace(/^\[(.*)\]$/, "$1");
    if (!ipaddr.isValid(bare)) return false;
    const address = normalized(ipaddr.parse(bare));
    for (const [range, bits] of this.allowed) {
      if (range.kind() === address.kind() && address.match(range, bits)) return true;
    }
    return address.range() === "unicast";
  }

  /** Throws AddressRefused unless the address may be reached. */
  check(address: string): void {
    if (!this.allows(address)) throw new AddressRefused(address);
  }

  /**
   * The registration check: every address `host` resolves to must be allowed (an IP literal is checked as it
   * is). Throws AddressRefused, or the resolver's error when the name does not resolve.
   */
  async checkHost(host: string): Promise<void> {
    const bare = host.replace(/^\[(.*)\]$/, "$1");
    if (isIP(bare)) return this.check(bare);
    const addresses = await dns.lookup(bare, { all: true, verbatim: true });
    for (const { address } of addresses) this.check(address);
  }

  /**
   * A `lookup` for net.connect and tls.connect that hands the socket only allowed addresses, so a connection is
   * never even attempted to an internal one. Node does not call `lookup` for IP literals; the socket's remote
   * address is checked after connecting as well (see the HTTP client), which covers those.
   */
  readonly lookup = (
    hostname: string,
    options: LookupOptions,
    callback: (error: Error | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, []);
      const usable = addresses.filter((entry) => this.allows(entry.address));
      if (usable.length === 0) {
        return callback(new AddressRefused(addresses[0]?.address ?? hostname), []);
      }
      if (options.all) return callback(null, usable);
      const first = usable[0]!;
      callback(null, first.address, first.family);
    });
  };
}
