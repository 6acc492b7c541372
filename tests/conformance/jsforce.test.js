// jsforce v3, unmodified, against a running sf-emulator (started by scripts/conformance.sh).
// Env: SF_LOGIN_URL, SF_INSTANCE_URL, SF_ORG_ID, SF_KEY_FILE (TEST-ONLY RSA key), batch size 3.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const jsforce = require('jsforce');

const LOGIN_URL = process.env.SF_LOGIN_URL;
const INSTANCE_URL = process.env.SF_INSTANCE_URL;
const ORG_ID = process.env.SF_ORG_ID;
const KEY = fs.readFileSync(process.env.SF_KEY_FILE);
const USER = 'integration@acme.example';
const PASSWORD = 'Passw0rd!EMUTOKEN';
const JWT_CLIENT = '3MVG9Emu.JWT.ClientId.natterbox';

function jwt(sub) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const claims = { iss: JWT_CLIENT, sub, aud: 'https://login.salesforce.com', exp: Math.floor(Date.now() / 1000) + 180 };
  const body = `${b64({ alg: 'RS256' })}.${b64(claims)}`;
  return `${body}.${crypto.sign('RSA-SHA256', Buffer.from(body), KEY).toString('base64url')}`;
}

async function soapLogin() {
  const conn = new jsforce.Connection({ loginUrl: LOGIN_URL, logLevel: 'FATAL' });
  await conn.login(USER, PASSWORD);
  return conn;
}

test('SOAP login with a custom loginUrl', async () => {
  const conn = new jsforce.Connection({ loginUrl: LOGIN_URL, logLevel: 'FATAL' });
  const info = await conn.login(USER, PASSWORD);
  assert.equal(info.organizationId, ORG_ID);
  assert.match(info.id, /^005/);
  assert.equal(conn.instanceUrl, INSTANCE_URL);
  assert.ok(conn.accessToken.startsWith(ORG_ID.slice(0, 15) + '!'));
});

test('SOAP login failure surfaces INVALID_LOGIN', async () => {
  const conn = new jsforce.Connection({ loginUrl: LOGIN_URL, logLevel: 'FATAL' });
  await assert.rejects(conn.login(USER, 'wrong'), /INVALID_LOGIN/);
});

test('JWT bearer through oauth2 authorize', async () => {
  const conn = new jsforce.Connection({ oauth2: { loginUrl: LOGIN_URL, clientId: JWT_CLIENT }, logLevel: 'FATAL' });
  const info = await conn.authorize({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: jwt(USER) });
  assert.equal(info.organizationId, ORG_ID);
  assert.equal(conn.instanceUrl, INSTANCE_URL);
  const res = await conn.query("SELECT Id, Name FROM Contact WHERE LastName = 'Lovelace'");
  assert.equal(res.records[0].Name, 'Ada Lovelace');
  const bad = new jsforce.Connection({ oauth2: { loginUrl: LOGIN_URL, clientId: JWT_CLIENT }, logLevel: 'FATAL' });
  await assert.rejects(
    bad.authorize({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: jwt('alan.turing@acme.example') }),
    /user hasn't approved this consumer/,
  );
});

test('query with paging: autoFetch and queryMore', async () => {
  const conn = await soapLogin();
  const first = await conn.query('SELECT Id, Name FROM Contact ORDER BY Name');
  assert.equal(first.totalSize, 9);
  assert.equal(first.done, false);
  assert.equal(first.records.length, 3);
  assert.match(first.nextRecordsUrl, /\/query\/01g\w{15}-3$/);
  const second = await conn.queryMore(first.nextRecordsUrl);
  assert.equal(second.records.length, 3);
  const all = await conn.query('SELECT Id, Name, Owner.Name, Account.Name FROM Contact ORDER BY Name').run({ autoFetch: true, maxFetch: 100 });
  assert.equal(all.records.length, 9);
  assert.equal(all.records[0].Name, 'Ada Lovelace');
  assert.equal(all.records[0].Owner.Name, 'Grace Hopper');
  assert.equal(all.records[0].Account.Name, 'Acme Corporation');
  const chris = all.records.find((r) => r.Name === 'Chris Nolan');
  assert.equal(chris.Account, null);
  assert.ok(conn.limitInfo.apiUsage.used > 0);
  assert.equal(conn.limitInfo.apiUsage.limit, 15000);
});

test('query errors keep Salesforce error codes', async () => {
  const conn = await soapLogin();
  await assert.rejects(conn.query('SELECT Id FROM'), (e) => e.errorCode === 'MALFORMED_QUERY');
  await assert.rejects(conn.query('SELECT Nope FROM Contact'), (e) => e.errorCode === 'INVALID_FIELD');
  const dead = new jsforce.Connection({ instanceUrl: INSTANCE_URL, accessToken: 'bogus', logLevel: 'FATAL' });
  await assert.rejects(dead.query('SELECT Id FROM Contact'), (e) => e.errorCode === 'INVALID_SESSION_ID' || e.name === 'INVALID_SESSION_ID');
});

test('SOSL search', async () => {
  const conn = await soapLogin();
  const res = await conn.search('FIND {4155550199} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone), Lead(Id, Name, Phone)');
  const names = res.searchRecords.map((r) => `${r.attributes.type}:${r.Name}`);
  assert.deepEqual(names, ['Contact:Bob Jones', 'Lead:Sam Lee']);
  await assert.rejects(conn.search('FIND {415-555-0199} IN PHONE FIELDS'), (e) => e.errorCode === 'MALFORMED_SEARCH');
});

test('create, retrieve, update, delete', async () => {
  const conn = await soapLogin();
  const created = await conn.sobject('Contact').create({ FirstName: 'Js', LastName: "O'Force", Phone: '+1 415 555 7777' });
  assert.equal(created.success, true);
  assert.match(created.id, /^003\w{15}$/);
  const rec = await conn.sobject('Contact').retrieve(created.id);
  assert.equal(rec.Name, "Js O'Force");
  assert.equal(rec.Phone, '+1 415 555 7777');
  const upd = await conn.sobject('Contact').update({ Id: created.id, Title: 'Tester' });
  assert.equal(upd.success, true);
  const after = await conn.sobject('Contact').retrieve(created.id);
  assert.equal(after.Title, 'Tester');
  const del = await conn.sobject('Contact').destroy(created.id);
  assert.equal(del.success, true);
  await assert.rejects(conn.sobject('Contact').retrieve(created.id), (e) => e.errorCode === 'ENTITY_IS_DELETED' || e.errorCode === 'NOT_FOUND');
  await assert.rejects(conn.sobject('Contact').create({ FirstName: 'NoLast' }), (e) => e.errorCode === 'REQUIRED_FIELD_MISSING');
});

test('multi-record create uses composite/sobjects', async () => {
  const conn = await soapLogin();
  const res = await conn.sobject('Task').create([
    { Subject: 'Call 1', Status: 'Completed', TaskSubtype: 'Call', CallType: 'Inbound' },
    { Subject: 'Call 2' },
  ]);
  assert.equal(res[0].success, true);
  assert.equal(res[1].success, false);
  assert.equal(res[1].errors[0].statusCode, 'REQUIRED_FIELD_MISSING');
});

test('platform event publish', async () => {
  const conn = await soapLogin();
  const res = await conn.sobject('Screen_Pop__e').create({ Phone__c: '+14155550123' });
  assert.equal(res.success, true);
  assert.equal(res.errors[0].statusCode, 'OPERATION_ENQUEUED');
});

test('an expired session is refreshed through refreshFn and the call retried', async () => {
  const oauth2 = { loginUrl: LOGIN_URL, clientId: JWT_CLIENT };
  const conn = new jsforce.Connection({ oauth2, logLevel: 'FATAL' });
  await conn.authorize({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: jwt(USER) });
  let refreshes = 0;
  const refreshing = new jsforce.Connection({
    oauth2,
    instanceUrl: conn.instanceUrl,
    accessToken: conn.accessToken,
    logLevel: 'FATAL',
    refreshFn: async (c, callback) => {
      refreshes += 1;
      const fresh = new jsforce.Connection({ oauth2, logLevel: 'FATAL' });
      await fresh.authorize({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: jwt(USER) });
      callback(null, fresh.accessToken);
    },
  });
  await refreshing.query('SELECT Id FROM Account LIMIT 1');
  const res = await fetch(`${LOGIN_URL}/__emulator/sessions/expire`, { method: 'POST' });
  assert.equal(res.status, 200);
  const after = await refreshing.query("SELECT Name FROM Account WHERE Name = 'Acme Corporation'");
  assert.equal(after.records[0].Name, 'Acme Corporation');
  assert.equal(refreshes, 1);
});
