// panva's oidc-provider as a real OpenID provider for chatsvc's integration tests.
// Listens on 127.0.0.1 only. Settings from the environment:
//   IDP_PORT      the port (required)
//   IDP_KEYS      a file holding the private JWKS to sign with (hard rotation: restart with another)
//   IDP_AUDIENCE  the resource indicator of chatsvc's API (the JWT access tokens' aud)
//   IDP_REDIRECT  chatsvc's origin (redirect and post-logout URIs)
// The issuer is "http://127.0.0.1:PORT/": it ends in "/" (Auth0 style).
// GET /__test/events lists what happened (grants, refreshes, revocations), for assertions.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.env.IDP_PORT);
const audience = process.env.IDP_AUDIENCE ?? 'api://chatsvc-idp';
const origin = process.env.IDP_REDIRECT;
const issuer = `http://127.0.0.1:${port}/`;
const jwks = JSON.parse(readFileSync(process.env.IDP_KEYS, 'utf8'));
const ACCESS_TTL = Number(process.env.IDP_ACCESS_TTL ?? 20);

const client = (extra) => ({
  redirect_uris: [`${origin}/auth/callback`],
  post_logout_redirect_uris: [`${origin}/`],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  ...extra,
});

const events = [];
const groupsOf = (id) => (id.startsWith('reader') ? ['Onyx-Readers'] : ['Onyx-Writers']);

const provider = new Provider(issuer, {
  clients: [
    client({ client_id: 'chatsvc-public', token_endpoint_auth_method: 'none' }),
    client({ client_id: 'chatsvc-confidential', client_secret: 'confidential-secret', token_endpoint_auth_method: 'client_secret_basic' }),
  ],
  jwks,
  cookies: { keys: ['chatsvc-test-cookie-key'] },
  scopes: ['openid', 'email', 'profile', 'offline_access', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  discovery: { resource_indicators_supported: true },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.com`, email_verified: true, groups: groupsOf(id) }),
  }),
  extraTokenClaims: async (ctx, token) => (token.kind === 'AccessToken' ? { groups: groupsOf(token.accountId), email: `${token.accountId}@example.com` } : undefined),
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'openid email profile groups offline_access',
        audience,
        accessTokenTTL: ACCESS_TTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  rotateRefreshToken: true,
  ttl: { AccessToken: ACCESS_TTL, IdToken: 3600, RefreshToken: 3600, Session: 3600, Grant: 3600, Interaction: 600 },
  pkce: { required: () => true },
});

for (const name of ['grant.success', 'grant.revoked', 'end_session.success', 'authorization.success', 'server_error', 'grant.error']) {
  provider.on(name, (ctx, arg) => events.push({ name, grant: ctx?.oidc?.params?.grant_type ?? null, error: arg?.message ?? null }));
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/events') {
    ctx.body = events;
    return;
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
