// The chart's `hsm` block (docs/hsm.md), rendered by the real helm: the key URI serve is given,
// the module and PIN volumes it points into, and the schema refusing incomplete settings.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { parsePkcs11Uri } from '../../src/ca/signers/pkcs11-uri.js';
import { cliPath } from '../support/paths.js';
import { Helm, only } from './helm-runner.js';
import type { Deployment } from './manifest-types.js';

const helm = new Helm();
after(() => helm.cleanup());

const HSM = {
  enabled: true,
  keyUri: 'pkcs11:token=mesh-ca;object=intermediate;type=private',
  moduleVolume: { hostPath: { path: '/opt/cloudhsm/lib', type: 'Directory' } },
  modulePath: 'libcloudhsm_pkcs11.so',
  pinSecret: { name: 'castellan-hsm-pin', key: 'user-pin' },
  extraVolumes: [{ name: 'hsm-config', configMap: { name: 'cloudhsm-config' } }],
  extraVolumeMounts: [{ name: 'hsm-config', mountPath: '/opt/cloudhsm/etc', readOnly: true }],
};

function deployment(values: Record<string, unknown>): Deployment {
  return only(helm.render(values), 'Deployment') as Deployment;
}

test('off by default: no key URI, no HSM volumes', () => {
  const dep = deployment({});
  const c = dep.spec.template.spec.containers[0]!;
  assert.ok(!c.args.some((a) => a.startsWith('--ca-key-uri')));
  assert.ok(!dep.spec.template.spec.volumes.some((v) => v.name.startsWith('hsm')));
});

test('on: serve gets a key URI into the mounted module and PIN file, which Castellan parses', () => {
  const dep = deployment({ hsm: HSM });
  const spec = dep.spec.template.spec;
  const c = spec.containers[0]!;
  const flag = c.args.filter((a) => a.startsWith('--ca-key-uri='));
  assert.equal(flag.length, 1);
  const uri = parsePkcs11Uri(flag[0]!.slice('--ca-key-uri='.length));
  assert.equal(uri.token, 'mesh-ca');
  assert.equal(uri.object, 'intermediate');
  assert.equal(uri.modulePath, '/opt/hsm/libcloudhsm_pkcs11.so');
  assert.deepEqual(uri.pinSource, { kind: 'file', path: '/var/run/castellan/hsm-pin/user-pin' });

  const mounts = new Map(c.volumeMounts.map((m) => [m.name, m]));
  assert.deepEqual(mounts.get('hsm-module'), {
    name: 'hsm-module',
    mountPath: '/opt/hsm',
    readOnly: true,
  });
  assert.deepEqual(mounts.get('hsm-pin'), {
    name: 'hsm-pin',
    mountPath: '/var/run/castellan/hsm-pin',
    readOnly: true,
  });
  assert.equal(mounts.get('hsm-config')?.mountPath, '/opt/cloudhsm/etc');
  const volumes = new Map(spec.volumes.map((v) => [v.name, v]));
  assert.deepEqual(volumes.get('hsm-module')?.hostPath, HSM.moduleVolume.hostPath);
  assert.deepEqual(volumes.get('hsm-pin')?.secret, {
    secretName: 'castellan-hsm-pin',
    defaultMode: 0o440,
    items: [{ key: 'user-pin', path: 'user-pin' }],
  });
  assert.ok(volumes.has('hsm-config'));
  // The PIN is a file, never an argument or an environment variable.
  assert.ok(!JSON.stringify(c.env ?? []).includes('castellan-hsm-pin'));

  const help = spawnSync(process.execPath, [cliPath, 'serve', '--help'], { encoding: 'utf8' });
  assert.match(help.stdout, /--ca-key-uri <pkcs11-uri>/);
});

test('the schema refuses an HSM block that could not work', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ ...HSM, keyUri: '' }, /hsm\.keyUri/],
    [{ ...HSM, keyUri: `${HSM.keyUri}?pin-value=1234` }, /hsm\.keyUri/],
    [{ ...HSM, modulePath: '' }, /hsm\.modulePath/],
    [{ ...HSM, modulePath: '/usr/lib/x.so' }, /hsm\.modulePath/],
    [{ ...HSM, moduleVolume: {} }, /hsm\.moduleVolume/],
    [{ ...HSM, pinSecret: { name: '', key: 'pin' } }, /hsm\.pinSecret\.name/],
    [{ ...HSM, pinValue: '1234' }, /hsm/],
  ];
  for (const [hsm, field] of cases) {
    const res = helm.template({ hsm });
    assert.notEqual(res.status, 0, `helm accepted ${JSON.stringify(hsm)}`);
    assert.match(res.stderr, /values don't meet the specifications of the schema/);
    assert.match(res.stderr, field);
  }
});
