//! pam_jit.so: the PAM module of jit (work in progress, see issue 4).
