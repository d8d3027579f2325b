/* empty until the core lands */ typedef int cf_placeholder_unused;
