/// Exit statuses a worker process uses to tell the supervisor something.
public enum WorkerExitStatus {
    /// The worker failed in a way a restart cannot fix (a batch run's dynamics blew up with no
    /// interaction to blame): the supervisor stops the run, saving the engine's state, instead of
    /// restarting it. 65 is sysexits' EX_DATAERR.
    public static let fatal: Int32 = 65
}
