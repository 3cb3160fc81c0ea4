/// Canonical units (OpenMM's): nm, ps, kJ/mol, amu, K. Force: kJ/mol/nm.
/// LAMMPS reduced LJ units map onto them exactly with sigma = 1 nm, epsilon = 1 kJ/mol, m = 1 amu
/// (then tau = 1 ps and reduced temperature T* = kB T / epsilon).
public enum Units {
    /// Boltzmann constant in kJ/(mol K) (CODATA 2018 times Avogadro's number).
    public static let boltzmann: Double = 0.00831446261815324
}
