import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * A seintje consumer in one file: Java 17, the JDK only (java.net.http, javax.crypto, and the JDK's own HTTP
 * server for the receiver). Two ways to take a feed:
 *
 * <pre>
 *   # Follow a feed with long-polls, restarting where it stopped
 *   SEINTJE_URL=http://127.0.0.1:8080 SEINTJE_TOKEN=$(npx seintje token --scope read:brk) \
 *       java examples/java/Seintje.java follow brk
 *
 *   # Receive wake-up pings, verify them, then pull what they announce
 *   SEINTJE_URL=http://127.0.0.1:8080 SEINTJE_TOKEN=... PUBLIC_URL=https://hooks.example.nl/seintje PORT=9000 \
 *       java examples/java/Seintje.java receive brk
 * </pre>
 *
 * follow prints each event as a JSON line and saves its cursor after handling each one, in CURSOR_FILE (default
 * .seintje-state/&lt;feed&gt;.java.cursor): at least once, never skipped. receive subscribes once (the
 * subscription's id, secret and cursor are kept in STATE_FILE, default .seintje-state/&lt;feed&gt;.java.receiver.json),
 * answers the CloudEvents webhook handshake, verifies each ping as Standard Webhooks prescribes (HMAC-SHA256 over
 * "id.timestamp.body", compared in constant time, timestamp within five minutes), answers it at once and then
 * pulls the feed from its own cursor; its token needs read and subscribe on the feed. Ctrl-C or SIGTERM stops
 * either.
 */
public class Seintje {
  static final int WAIT_SECONDS = 30;
  static final long TOLERANCE_SECONDS = 5 * 60;
  /** Held while an event is handled and its cursor saved: a stop waits for it, so nothing is half done. */
  static final Object handling = new Object();
  static final String URL =
      System.getenv().getOrDefault("SEINTJE_URL", "http://127.0.0.1:8080").replaceAll("/+$", "");
  static final String TOKEN = System.getenv("SEINTJE_TOKEN");
  static final HttpClient CLIENT = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

  public static void main(String[] args) throws Exception {
    String mode = args.length > 0 ? args[0] : "";
    String feed = args.length > 1 ? args[1] : "brk";
    // On SIGTERM or Ctrl-C: wait for the event in hand, then stop (exit code 0; the cursor is saved).
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      synchronized (handling) {
        Runtime.getRuntime().halt(0);
      }
    }));
    if (mode.equals("follow")) follow(feed);
    else if (mode.equals("receive")) receive(feed);
    else {
      System.err.println("usage: java examples/java/Seintje.java follow|receive <feed>");
      System.exit(2);
    }
  }

  static HttpRequest.Builder request(String path) {
    HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(URL + path)).timeout(Duration.ofSeconds(WAIT_SECONDS + 10));
    if (TOKEN != null && !TOKEN.isEmpty()) request.header("Authorization", "Bearer " + TOKEN);
    return request;
  }

  static String feedPath(String feed) {
    return "/v1/feeds/" + URLEncoder.encode(feed, StandardCharsets.UTF_8) + "/events";
  }

  static void follow(String feed) throws Exception {
    Path cursorFile = Path.of(System.getenv().getOrDefault("CURSOR_FILE", ".seintje-state/" + feed + ".java.cursor"));
    String after = Files.exists(cursorFile) ? Files.readString(cursorFile).strip() : "0";
    if (after.isEmpty()) after = "0";
    long backoff = 1;
    while (true) {
      String query = "?after=" + after + "&limit=100&wait=" + WAIT_SECONDS;
      HttpResponse<String> response;
      try {
        response = CLIENT.send(request(feedPath(feed) + query).build(), HttpResponse.BodyHandlers.ofString());
      } catch (IOException error) {
        System.err.println(error + "; again in " + backoff + " s");
        Thread.sleep(backoff * 1000);
        backoff = Math.min(backoff * 2, 30);
        continue;
      }
      if (response.statusCode() == 410) {
        // Retention removed events this consumer never saw: a real one resynchronises here.
        Object oldest = ((Map<?, ?>) Json.parse(response.body())).get("oldest");
        System.err.println("missed events after " + after + "; resuming at the oldest kept event, " + oldest);
        after = oldest == null ? "0" : String.valueOf(Long.parseLong((String) oldest) - 1);
        continue;
      }
      if (response.statusCode() >= 400 && response.statusCode() < 500) {
        System.err.println("refused: " + response.statusCode() + " " + response.body());
        System.exit(1);
      }
      if (response.statusCode() != 200) {
        System.err.println(response.statusCode() + "; again in " + backoff + " s");
        Thread.sleep(backoff * 1000);
        backoff = Math.min(backoff * 2, 30);
        continue;
      }
      backoff = 1;
      Map<?, ?> page = (Map<?, ?>) Json.parse(response.body());
      for (Object item : (List<?>) page.get("events")) {
        Map<?, ?> event = (Map<?, ?>) item;
        synchronized (handling) {
          // Here a real consumer updates its copy of the register: idempotently, since an event may come twice.
          System.out.println("{\"sequence\":" + Json.quote((String) event.get("sequence")) + ",\"type\":"
              + Json.quote((String) event.get("type")) + "}");
          System.out.flush();
          saveCursor(cursorFile, (String) event.get("sequence"));
        }
      }
      after = (String) page.get("next");
    }
  }

  /** Writes a file anew, then moves it over the old one: never half-written. */
  static void writeAtomically(Path file, String content) throws IOException {
    if (file.getParent() != null) Files.createDirectories(file.getParent());
    Path temporary = file.resolveSibling(file.getFileName() + "." + ProcessHandle.current().pid() + ".tmp");
    Files.writeString(temporary, content);
    Files.move(temporary, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  static void saveCursor(Path file, String sequence) throws IOException {
    writeAtomically(file, sequence + "\n");
  }

  // ---- receive ----

  /** The subscription's id, secret and cursor, as kept in STATE_FILE. */
  static volatile Map<String, String> state;
  static final Object pulling = new Object();
  static volatile boolean pingedAgain;

  static void receive(String feed) throws Exception {
    int port = Integer.parseInt(System.getenv().getOrDefault("PORT", "9000"));
    String publicUrl = System.getenv().getOrDefault("PUBLIC_URL", "http://127.0.0.1:" + port + "/seintje");
    Path stateFile = Path.of(System.getenv().getOrDefault("STATE_FILE", ".seintje-state/" + feed + ".java.receiver.json"));
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
    server.setExecutor(Executors.newCachedThreadPool());
    server.createContext("/", exchange -> {
      byte[] body = exchange.getRequestBody().readAllBytes();
      if (exchange.getRequestMethod().equals("OPTIONS")) {
        // The CloudEvents webhook handshake, answered when the subscription is created.
        String origin = exchange.getRequestHeaders().getFirst("WebHook-Request-Origin");
        exchange.getResponseHeaders().set("WebHook-Allowed-Origin", origin == null ? "*" : origin);
        exchange.sendResponseHeaders(200, -1);
      } else if (state == null) {
        exchange.sendResponseHeaders(503, -1);
      } else {
        String refusal = verify(exchange.getRequestHeaders(), body, state.get("secret"));
        if (refusal != null) {
          System.err.println("refused a ping: " + refusal);
          exchange.sendResponseHeaders(401, -1);
        } else {
          exchange.sendResponseHeaders(204, -1);
          new Thread(() -> pull(feed, stateFile)).start();
        }
      }
      exchange.close();
    });
    server.start();
    if (Files.exists(stateFile)) {
      Map<?, ?> saved = (Map<?, ?>) Json.parse(Files.readString(stateFile));
      state = Map.of("subscription", (String) saved.get("subscription"), "secret", (String) saved.get("secret"),
          "cursor", (String) saved.get("cursor"));
    } else {
      String request = "{\"feed\":" + Json.quote(feed) + ",\"url\":" + Json.quote(publicUrl)
          + ",\"description\":\"examples/java/Seintje.java\"}";
      HttpResponse<String> created = CLIENT.send(
          request("/v1/subscriptions").header("Content-Type", "application/json")
              .POST(HttpRequest.BodyPublishers.ofString(request)).build(),
          HttpResponse.BodyHandlers.ofString());
      if (created.statusCode() != 201) {
        System.err.println("could not subscribe: " + created.statusCode() + " " + created.body());
        System.exit(1);
      }
      Map<?, ?> subscription = (Map<?, ?>) Json.parse(created.body());
      saveState(stateFile, (String) subscription.get("id"), (String) subscription.get("secret"),
          (String) subscription.get("acked"));
    }
    System.err.println("receiving pings for " + feed + " at " + publicUrl + " (subscription " + state.get("subscription") + ")");
    pull(feed, stateFile);
    Thread.currentThread().join();
  }

  static void saveState(Path file, String subscription, String secret, String cursor) throws IOException {
    writeAtomically(file, "{\"subscription\":" + Json.quote(subscription) + ",\"secret\":" + Json.quote(secret)
        + ",\"cursor\":" + Json.quote(cursor) + "}");
    state = Map.of("subscription", subscription, "secret", secret, "cursor", cursor);
  }

  /** Null for a ping that may be trusted, else why not (Standard Webhooks). */
  static String verify(com.sun.net.httpserver.Headers headers, byte[] body, String secret) {
    String id = headers.getFirst("webhook-id");
    String timestamp = headers.getFirst("webhook-timestamp");
    String signatures = headers.getFirst("webhook-signature");
    if (id == null || timestamp == null || signatures == null) return "missing-headers";
    try {
      if (Math.abs(System.currentTimeMillis() / 1000 - Long.parseLong(timestamp)) > TOLERANCE_SECONDS) {
        return "timestamp-out-of-range";
      }
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(Base64.getDecoder().decode(secret.substring("whsec_".length())), "HmacSHA256"));
      mac.update((id + "." + timestamp + ".").getBytes(StandardCharsets.UTF_8));
      byte[] expected = mac.doFinal(body);
      for (String signature : signatures.split(" ")) {
        String[] parts = signature.split(",", 2);
        if (parts.length == 2 && parts[0].equals("v1")
            && MessageDigest.isEqual(expected, Base64.getDecoder().decode(parts[1]))) {
          return null;
        }
      }
      return "bad-signature";
    } catch (NumberFormatException error) {
      return "bad-timestamp";
    } catch (IllegalArgumentException | java.security.GeneralSecurityException error) {
      return "bad-signature";
    }
  }

  /** Reads every event after the cursor, a page at a time; one pull at a time, again if pinged meanwhile. */
  static void pull(String feed, Path stateFile) {
    pingedAgain = true;
    synchronized (pulling) {
      try {
        while (pingedAgain) {
          pingedAgain = false;
          while (true) {
            String query = "?after=" + state.get("cursor") + "&limit=1000";
            HttpResponse<String> response =
                CLIENT.send(request(feedPath(feed) + query).build(), HttpResponse.BodyHandlers.ofString());
            if (response.statusCode() != 200) throw new IOException("the feed answered " + response.statusCode());
            Map<?, ?> page = (Map<?, ?>) Json.parse(response.body());
            synchronized (handling) {
              for (Object item : (List<?>) page.get("events")) {
                Map<?, ?> event = (Map<?, ?>) item;
                // Here a real receiver updates its copy of the register.
                System.out.println("{\"sequence\":" + Json.quote((String) event.get("sequence")) + ",\"id\":"
                    + Json.quote((String) event.get("id")) + ",\"type\":" + Json.quote((String) event.get("type")) + "}");
              }
              System.out.flush();
              saveState(stateFile, state.get("subscription"), state.get("secret"), (String) page.get("next"));
            }
            if (page.get("next").equals(page.get("head"))) break;
          }
        }
      } catch (IOException | InterruptedException error) {
        System.err.println("pull failed (the next ping tries again): " + error);
      }
    }
  }

  /** Just enough JSON for seintje's answers: objects, arrays, strings, numbers, true, false, null. */
  static final class Json {
    private final String text;
    private int at;

    private Json(String text) {
      this.text = text;
    }

    static Object parse(String text) {
      Json json = new Json(text);
      Object value = json.value();
      json.space();
      if (json.at != text.length()) throw new IllegalArgumentException("trailing text at " + json.at);
      return value;
    }

    static String quote(String value) {
      if (value == null) return "null";
      StringBuilder out = new StringBuilder("\"");
      for (char c : value.toCharArray()) {
        if (c == '"' || c == '\\') out.append('\\').append(c);
        else if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
        else out.append(c);
      }
      return out.append('"').toString();
    }

    private void space() {
      while (at < text.length() && Character.isWhitespace(text.charAt(at))) at++;
    }

    private Object value() {
      space();
      char c = text.charAt(at);
      if (c == '{') {
        Map<String, Object> object = new java.util.LinkedHashMap<>();
        at++;
        space();
        if (text.charAt(at) == '}') {
          at++;
          return object;
        }
        while (true) {
          space();
          String key = string();
          space();
          at++; // ':'
          object.put(key, value());
          space();
          if (text.charAt(at++) == '}') return object;
        }
      }
      if (c == '[') {
        List<Object> array = new java.util.ArrayList<>();
        at++;
        space();
        if (text.charAt(at) == ']') {
          at++;
          return array;
        }
        while (true) {
          array.add(value());
          space();
          if (text.charAt(at++) == ']') return array;
        }
      }
      if (c == '"') return string();
      if (text.startsWith("true", at)) {
        at += 4;
        return Boolean.TRUE;
      }
      if (text.startsWith("false", at)) {
        at += 5;
        return Boolean.FALSE;
      }
      if (text.startsWith("null", at)) {
        at += 4;
        return null;
      }
      int start = at;
      while (at < text.length() && "+-0123456789.eE".indexOf(text.charAt(at)) >= 0) at++;
      return Double.parseDouble(text.substring(start, at));
    }

    private String string() {
      StringBuilder out = new StringBuilder();
      at++; // the opening quote
      while (true) {
        char c = text.charAt(at++);
        if (c == '"') return out.toString();
        if (c != '\\') {
          out.append(c);
          continue;
        }
        char escaped = text.charAt(at++);
        switch (escaped) {
          case 'n' -> out.append('\n');
          case 't' -> out.append('\t');
          case 'r' -> out.append('\r');
          case 'b' -> out.append('\b');
          case 'f' -> out.append('\f');
          case 'u' -> {
            out.append((char) Integer.parseInt(text.substring(at, at + 4), 16));
            at += 4;
          }
          default -> out.append(escaped);
        }
      }
    }
  }
}
