#!/usr/bin/python3
"""Molecular-dynamics data for the alanine-dipeptide Boltzmann generator (Debian's OpenMM 7.7).

Builds ACE-ALA-NME (22 atoms, hydrogens already present) from native.pdb of python-mdtraj-doc with
amber99sbildn + amber96_obc (implicit solvent), NoCutoff, HBond constraints, and runs 300 K
Langevin dynamics (2 fs, friction 1/ps) on the Reference platform. One trajectory is recorded for
training and an independent one (its own seed and its own equilibration) for held-out frames.

Written to --out (all float64, nm and kJ/mol):
  {train,test}_xyz.npy       [N, 66]  constrained MD frames (X-H bonds at the force-field length)
  {train,test}_energy.npy    [N]      their potential energies, from the constraints=None system
  {train,test}_therm_xyz.npy [N, 66]  the same frames with each constrained X-H bond length redrawn
                                      from its harmonic Boltzmann marginal N(r0, kT/k) (see below)
  {train,test}_therm_energy.npy [N]
  system.xml                 the constraints=None System (XmlSerializer) used for every energy
  integrator.xml             a 1 fs Langevin integrator for that System (the embedding example)
  meta.txt                   the parameters; a second run with the same parameters reuses the data

Why "therm": with HBond constraints the MD frames lie on a 48-dimensional manifold of the 60
free coordinates (12 fixed X-H lengths), while the energy u(x) the samples are judged by counts
the X-H bond terms. A density model needs a full-dimensional target, so the frames are moved
onto the unconstrained ensemble by resampling each constrained bond length along its own
direction (angles and dihedrals unchanged) from N(r0, kT/k). That is the exact conditional of the
bond term alone; the neglected couplings (r^2 Jacobian, non-bonded terms of the moved H) are
small (sigma_r = 0.003 nm against r0 = 0.1 nm). The mean energy rises by about 12 * kT/2.
"""
import argparse
import os
import sys
import time

import numpy as np

try:
    import openmm as mm
    from openmm import app, unit
except ImportError:  # OpenMM < 7.6 layout
    from simtk import openmm as mm
    from simtk.openmm import app, unit

KT = 0.0083144626 * 300.0  # kJ/mol


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--pdb", default="/usr/share/doc/python-mdtraj-doc/examples/data/native.pdb")
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--stride", type=int, default=250, help="MD steps between frames (250 = 0.5 ps)")
    p.add_argument("--equil", type=int, default=50000, help="equilibration steps per trajectory (100 ps)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--part", choices=["all", "train", "test", "system"], default="all",
                   help="which part to produce (the job runs train and test in two processes)")
    return p.parse_args()


def build(pdb_path):
    pdb = app.PDBFile(pdb_path)
    names = [r.name for r in pdb.topology.residues()]
    if names != ["ACE", "ALA", "NME"] or pdb.topology.getNumAtoms() != 22:
        sys.exit(f"md.py: {pdb_path} has residues {names} and {pdb.topology.getNumAtoms()} atoms; "
                 "expected ACE ALA NME with 22 atoms (hydrogens included)")
    ff = app.ForceField("amber99sbildn.xml", "amber96_obc.xml")
    md = ff.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    energy = ff.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    return pdb, md, energy


def hbond_table(pdb, energy_system):
    """(heavy, hydrogen, r0 nm, k kJ/mol/nm^2) for every X-H bond (the ones HBonds constrains)."""
    hyd = {a.index for a in pdb.topology.atoms() if a.element is not None and a.element.symbol == "H"}
    bonds = None
    for f in energy_system.getForces():
        if isinstance(f, mm.HarmonicBondForce):
            bonds = f
    table = []
    for b in range(bonds.getNumBonds()):
        i, j, r0, k = bonds.getBondParameters(b)
        if (i in hyd) != (j in hyd):
            heavy, h = (j, i) if i in hyd else (i, j)
            table.append((heavy, h, r0.value_in_unit(unit.nanometer),
                          k.value_in_unit(unit.kilojoule_per_mole / unit.nanometer ** 2)))
    return table


def thermalize(xyz, table, rng):
    """Redraws each X-H length from N(r0, kT/k) along the bond direction (a copy of xyz [N, 22, 3])."""
    out = xyz.copy()
    for heavy, h, r0, k in table:
        d = out[:, h] - out[:, heavy]
        r = np.linalg.norm(d, axis=1, keepdims=True)
        r_new = r0 + np.sqrt(KT / k) * rng.standard_normal(r.shape)
        out[:, h] = out[:, heavy] + d / np.maximum(r, 1e-12) * np.maximum(r_new, 1e-3)
    return out


def energies(energy_system, xyz):
    ctx = mm.Context(energy_system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    e = np.empty(len(xyz))
    for n, x in enumerate(xyz):
        ctx.setPositions(x)
        e[n] = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    return e


def run(pdb, md_system, n, stride, equil, seed):
    integ = mm.LangevinIntegrator(300 * unit.kelvin, 1.0 / unit.picosecond, 2.0 * unit.femtosecond)
    integ.setRandomNumberSeed(seed)
    ctx = mm.Context(md_system, integ, mm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pdb.positions)
    mm.LocalEnergyMinimizer.minimize(ctx, 1.0, 500)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, seed)
    integ.step(equil)
    xyz = np.empty((n, 22, 3))
    t0 = time.time()
    for i in range(n):
        integ.step(stride)
        xyz[i] = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    ns = n * stride * 0.002 / 1000
    print(f"md.py: {n} frames, {ns:.2f} ns in {time.time() - t0:.1f} s "
          f"({ns / max(time.time() - t0, 1e-9) * 86400:.0f} ns/day)", file=sys.stderr)
    return xyz


def save(path, a):
    tmp = path + ".tmp.npy"
    np.save(tmp, a)
    os.replace(tmp, path)


def main():
    a = parse()
    os.makedirs(a.out, exist_ok=True)
    if not os.path.exists(a.pdb):
        sys.exit(f"md.py: {a.pdb} not found (apt-get download python-mdtraj-doc && dpkg-deb -x ...)")
    pdb, md_system, energy_system = build(a.pdb)
    table = hbond_table(pdb, energy_system)
    if a.part in ("all", "system"):
        with open(os.path.join(a.out, "system.xml"), "w") as f:
            f.write(mm.XmlSerializer.serialize(energy_system))
        integ = mm.LangevinIntegrator(300 * unit.kelvin, 1.0 / unit.picosecond, 1.0 * unit.femtosecond)
        with open(os.path.join(a.out, "integrator.xml"), "w") as f:
            f.write(mm.XmlSerializer.serialize(integ))
        with open(os.path.join(a.out, "hbonds.txt"), "w") as f:
            for heavy, h, r0, k in table:
                f.write(f"{heavy} {h} {r0:.6f} {k:.1f}\n")
    parts = {"train": (a.n_train, a.seed), "test": (a.n_test, a.seed + 1000)}
    for name, (n, seed) in parts.items():
        if a.part not in ("all", name):
            continue
        xyz = run(pdb, md_system, n, a.stride, a.equil, seed)
        therm = thermalize(xyz, table, np.random.default_rng(seed))
        e, e_t = energies(energy_system, xyz), energies(energy_system, therm)
        if not (np.isfinite(e).all() and np.isfinite(e_t).all()):
            sys.exit("md.py: non-finite MD energies")
        print(f"md.py: {name}: mean energy {e.mean():.2f} kJ/mol constrained, {e_t.mean():.2f} thermalised "
              f"(+{(e_t.mean() - e.mean()) / KT:.2f} kT; {len(table)} X-H bonds, expected +{len(table) / 2} kT)",
              file=sys.stderr)
        save(os.path.join(a.out, f"{name}_xyz.npy"), xyz.reshape(n, 66))
        save(os.path.join(a.out, f"{name}_energy.npy"), e)
        save(os.path.join(a.out, f"{name}_therm_xyz.npy"), therm.reshape(n, 66))
        save(os.path.join(a.out, f"{name}_therm_energy.npy"), e_t)


if __name__ == "__main__":
    main()
