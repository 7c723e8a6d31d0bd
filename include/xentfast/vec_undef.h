/* Forgets a vector layer's names (and an instantiation's XF_T and XF_FN),
 * so that one file can instantiate kernel_template.h with a second layer:
 * neon.c includes vec_neon.h (float32), the template, this file, then
 * vec_neon_f64.h (float64) and the template again.  Every name
 * kernel_template.h lists, and XF_EXP2_MID, which general_row.h derives
 * from the layer's V_EXP2_MID.  No include guard: include it between two
 * layers each time.  The x86 files (one layer each) do not include it. */
#undef XF_T
#undef XF_FN
#undef XF_V
#undef XF_W
#undef XF_VBYTES
#undef XF_T_MAX
#undef XF_CAP_NARROW_MAX
#undef XF_CAP_ONE_LOOP_CAP
#undef V_SET1
#undef V_LOADU
#undef V_STOREU
#undef V_STREAM
#undef V_LOAD_TAIL
#undef V_STORE_TAIL
#undef V_ZERO_TAIL
#undef V_ADD
#undef V_SUB
#undef V_MUL
#undef V_DIV
#undef V_MAX
#undef V_MIN
#undef V_FMA
#undef V_FNMA
#undef V_FMS
#undef V_EXP
#undef V_EXP_NONPOS
#undef V_EXP_MID
#undef V_EXPM1_MID
#undef XF_TANH_RATIONAL
#undef V_HMAX
#undef V_HSUM
#undef V_FIRST
#undef XF_SFENCE
#undef V_ROUND_T
#undef V_SELECT_GE0
#undef V_SELECT_EQ
#undef V_ZERO_WHERE_ZERO
#undef V_ANY_ZERO
#undef V_EXP2_MID
#undef V_EXP2_SCALED
#undef XF_EXP2_MID
#undef V_LOG
#undef XF_LOG1P01
#undef XF_VI
#undef VI_LOAD
#undef VI_ADD
#undef VI_TO_V
#undef VI_TARGETS
#undef V_GATHER
#undef V_PERMUTE
#undef V_STORE_F64
#undef XF_COLUMNS
#undef XF_COLUMNS_MAX
#undef V_COLUMNS_SETUP
#undef V_COLUMN
