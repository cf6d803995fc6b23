// Decodes a LiveKit access token with LiveKit's own verifier (npm
// livekit-server-sdk's TokenVerifier: signature, issuer, expiry) and prints
// its claims as JSON. Arguments: api key, api secret; the token on stdin.
// Run by crates/huddle/tests/media_tokens.rs through verify-token.sh.
import { TokenVerifier } from 'livekit-server-sdk';

const [apiKey, apiSecret] = process.argv.slice(2);
let token = '';
for await (const chunk of process.stdin) token += chunk;
try {
  const claims = await new TokenVerifier(apiKey, apiSecret).verify(token.trim());
  process.stdout.write(JSON.stringify(claims));
} catch (e) {
  process.stderr.write(`refused: ${e.message}\n`);
  process.exit(3);
}
